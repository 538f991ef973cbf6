"""kopf's settings for this operator, each set on purpose (kopf's defaults suit demos, not us)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kopf

FINALIZER = "livepeer.org/cleanup"
ANNOTATION_PREFIX = "livepeer.org"


@dataclass(frozen=True)
class RuntimeTuning:
    """Intervals of the operator's own loops (seconds); tests shrink them."""

    # How often every capability is re-reconciled even when nothing was watched changing:
    # Secrets and StorageClasses are read, not watched, and prefetch progress is polled.
    resync_interval: float = 30.0
    # How soon a capability with a running download is looked at again (progress polling).
    progress_interval: float = 5.0
    # Child events arriving within this window cause one reconcile, not one each.
    debounce: float = 0.2
    # Reconciles running at once; the rest queue (bounds API load with 1000s of capabilities).
    concurrency: int = 32
    # Timeout of one GET /progress to a prefetch pod.
    progress_timeout: float = 1.0
    # How long a read of a Secret's key names or a StorageClass's presence is reused.
    reference_ttl: float = 10.0
    # Failed prefetch Job retry backoff: base * 2**(attempt-1), capped.
    retry_base: float = 10.0
    retry_cap: float = 600.0


def configure(settings: kopf.OperatorSettings, *, standalone: bool = True, api_double: bool = False) -> None:
    # One replica runs the operator (the chart deploys one, with a Recreate strategy), so no
    # peering objects are needed; peering would also need a CRD of kopf's own.
    settings.peering.standalone = standalone
    settings.peering.mandatory = False
    # Discovery of namespaces/CRDs at runtime; off against an API double that cannot list
    # namespaces (the operator is then given its namespaces or runs cluster-wide).
    settings.scanning.disabled = api_double
    # After its own patch kopf waits for the next resourceVersion before handling the object
    # again; an API double that never changes resourceVersion would stall it for the whole wait.
    settings.persistence.consistency_timeout = 0.2 if api_double else 5.0
    # Our finalizer name, not kopf's, so `kubectl get -o yaml` says who blocks a deletion.
    # It is added only to byoc/liveRunner capabilities (see the delete handler's filter).
    settings.persistence.finalizer = FINALIZER
    # Handler progress and the last-handled spec live in annotations under our own prefix:
    # the status belongs to the reconcile (a status diff writes nothing when unchanged).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Only explicit Events (Ready transitions, failures) reach the API; log lines stay logs.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "lpbyoc"
    # Ask the server to end watches regularly and give up on silent connections, so a
    # half-open TCP stream cannot leave the operator blind.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = 600
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # A handler that raised an unexpected error is retried after this delay.
    settings.execution.default_backoff = 10
    # Give in-flight reconciles a moment to finish on shutdown.
    settings.process.ultimate_exiting_timeout = 30
