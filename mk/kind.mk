# kind targets: a local cluster with GPUs (or a fake GPU), the images, the chart, the e2e suite.
# Included by the Makefile; also usable alone: make -f mk/kind.mk kind-up. See docs/kind.md.

KIND ?= kind
KUBECTL ?= kubectl
HELM ?= helm
DOCKER ?= docker
E2E_PYTEST ?= .venv/bin/pytest
E2E_PYTHON ?= .venv/bin/python

KIND_CLUSTER ?= lpbyoc
KIND_CONFIG ?= kind-config.yaml
# The worker node of kind-config.yaml: the one that gets the GPUs.
KIND_GPU_NODE ?= $(KIND_CLUSTER)-worker
KUBE_CONTEXT ?= kind-$(KIND_CLUSTER)
KIND_WAIT ?= 180s

NVIDIA_DEVICE_PLUGIN_REPO ?= https://nvidia.github.io/k8s-device-plugin
NVIDIA_DEVICE_PLUGIN_VERSION ?= 0.17.1
# Fake GPUs advertised by kind-fake-gpu (the sample runs 2 replicas of 1 GPU).
FAKE_GPU_COUNT ?= 4

# The tags the chart and the CRD default to, so the images loaded into kind are the ones used
# (imagePullPolicy IfNotPresent finds them on the node).
IMAGE_TAG ?= 0.1.0
OPERATOR_REPOSITORY ?= ghcr.io/livepeer-byoc/operator
WORKER_REPOSITORY ?= ghcr.io/livepeer-byoc/worker
OPERATOR_IMAGE ?= $(OPERATOR_REPOSITORY):$(IMAGE_TAG)
WORKER_IMAGE ?= $(WORKER_REPOSITORY):$(IMAGE_TAG)

# Operator, orchestrator and capabilities share one namespace, as the chart's orchestrator and
# the capabilities' Secrets must.
RELEASE ?= lpbyoc
E2E_NAMESPACE ?= lpbyoc-e2e
SAMPLE ?= examples/byoc-image-restyle.yaml
# One replica: a one-GPU host can run the sample.
SAMPLE_REPLICAS ?= 1
CHART_DIR ?= charts/livepeer-byoc-operator
ORCHESTRATOR_URL ?= https://$(RELEASE)-livepeer-byoc-operator-orchestrator.$(E2E_NAMESPACE).svc.cluster.local:8935
# Extra `helm upgrade` arguments, e.g. HELM_ARGS='--set operator.hfEndpoint=http://mirror:8080'.
HELM_ARGS ?=
# kind-fake-gpu-deploy: no GPU in the node, so Triton must run its instances on CPU.
FAKE_GPU_HELM_ARGS ?= --set operator.extraEnv[0].name=LPBYOC_TRITON_KIND,operator.extraEnv[0].value=KIND_CPU

KCTL := $(KUBECTL) --context $(KUBE_CONTEXT)

# Run inside the GPU node container (what nvkind does): install the NVIDIA container toolkit,
# make it containerd's default runtime, and hide /proc/driver/nvidia's device-file creation so
# the node sees only the GPUs it was given.
define KIND_NODE_GPU_SETUP
set -euo pipefail
apt-get update -qq
apt-get install -y -qq gpg curl
curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' > /etc/apt/sources.list.d/nvidia-container-toolkit.list
apt-get update -qq
apt-get install -y -qq nvidia-container-toolkit
nvidia-ctk runtime configure --runtime=containerd --config-source=command --set-as-default
systemctl restart containerd
if grep -q '^ModifyDeviceFiles: 1$$' /proc/driver/nvidia/params; then umount -R /proc/driver/nvidia || true; cp /proc/driver/nvidia/params /root/gpu-params; sed -i 's/^ModifyDeviceFiles: 1$$/ModifyDeviceFiles: 0/' /root/gpu-params; mount --bind /root/gpu-params /proc/driver/nvidia/params; fi
endef
export KIND_NODE_GPU_SETUP

.PHONY: kind-cluster
kind-cluster: ## Create the kind cluster from kind-config.yaml (no GPU setup)
	$(KIND) create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait $(KIND_WAIT)

.PHONY: kind-up
kind-up: kind-cluster ## kind cluster with the host's GPUs and the NVIDIA device plugin (needs the toolkit, see docs/kind.md)
	$(DOCKER) exec $(KIND_GPU_NODE) bash -c "$$KIND_NODE_GPU_SETUP"
	$(HELM) upgrade --install nvidia-device-plugin nvidia-device-plugin --repo $(NVIDIA_DEVICE_PLUGIN_REPO) --version $(NVIDIA_DEVICE_PLUGIN_VERSION) --kube-context $(KUBE_CONTEXT) --namespace nvidia --create-namespace --wait
	$(KCTL) wait --for=jsonpath='{.status.allocatable.nvidia\.com/gpu}' node/$(KIND_GPU_NODE) --timeout=$(KIND_WAIT)

.PHONY: kind-fake-gpu
kind-fake-gpu: kind-cluster ## kind cluster whose worker node advertises nvidia.com/gpu without a GPU (Docker only; Triton runs on CPU)
	$(KCTL) patch node $(KIND_GPU_NODE) --subresource=status --type=json -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"$(FAKE_GPU_COUNT)"}]'
	$(KCTL) wait --for=jsonpath='{.status.allocatable.nvidia\.com/gpu}'=$(FAKE_GPU_COUNT) node/$(KIND_GPU_NODE) --timeout=60s

.PHONY: images
images: ## Build the operator and worker images and load them into the kind cluster
	$(DOCKER) build -t $(OPERATOR_IMAGE) -f operator/Dockerfile operator
	$(DOCKER) build -t $(WORKER_IMAGE) -f worker-image/Dockerfile worker-image
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(WORKER_IMAGE)

.PHONY: deploy-chart
deploy-chart: ## helm install operator + go-livepeer orchestrator in E2E_NAMESPACE, with the sample's Secrets
	$(KCTL) create namespace $(E2E_NAMESPACE) --dry-run=client -o yaml | $(KCTL) apply -f -
	$(KCTL) -n $(E2E_NAMESPACE) get secret orch-secret >/dev/null 2>&1 || $(KCTL) -n $(E2E_NAMESPACE) create secret generic orch-secret --from-literal=secret=$$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	$(KCTL) -n $(E2E_NAMESPACE) get secret worker-token >/dev/null 2>&1 || $(KCTL) -n $(E2E_NAMESPACE) create secret generic worker-token --from-literal=token=$$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	$(HELM) upgrade --install $(RELEASE) $(CHART_DIR) --kube-context $(KUBE_CONTEXT) --namespace $(E2E_NAMESPACE) --wait --set image.repository=$(OPERATOR_REPOSITORY) --set image.tag=$(IMAGE_TAG) --set operator.workerImage=$(WORKER_IMAGE) --set orchestrator.enabled=true --set orchestrator.secret.name=orch-secret --set orchestrator.secret.key=secret --set orchestrator.aiModels=false $(HELM_ARGS)

.PHONY: deploy
deploy: deploy-chart ## deploy-chart, then apply SAMPLE pointed at the chart's orchestrator
	$(E2E_PYTHON) -m tests.e2e.manifests $(SAMPLE) --orchestrator-url $(ORCHESTRATOR_URL) --replicas $(SAMPLE_REPLICAS) | $(KCTL) -n $(E2E_NAMESPACE) apply -f -

.PHONY: kind-fake-gpu-deploy
kind-fake-gpu-deploy: HELM_ARGS += $(FAKE_GPU_HELM_ARGS)
kind-fake-gpu-deploy: deploy ## deploy on a kind-fake-gpu cluster: the worker runs Triton on CPU

.PHONY: test-e2e
test-e2e: ## Run the e2e suite against the kind cluster (skips with a reason when there is none)
	LPBYOC_E2E_CONTEXT=$(KUBE_CONTEXT) LPBYOC_E2E_CLUSTER=$(KIND_CLUSTER) LPBYOC_E2E_NAMESPACE=$(E2E_NAMESPACE) LPBYOC_E2E_RELEASE=$(RELEASE) LPBYOC_E2E_EXAMPLE=$(SAMPLE) LPBYOC_E2E_ORCHESTRATOR_URL=$(ORCHESTRATOR_URL) $(E2E_PYTEST) -m e2e tests/e2e -v -rs

# gpu when the host's driver answers, else fake-gpu; override with KIND_DEMO_MODE=fake-gpu.
KIND_DEMO_MODE ?= $(if $(shell nvidia-smi -L 2>/dev/null),gpu,fake-gpu)
KIND_DEMO_HELM_ARGS = $(if $(filter gpu,$(KIND_DEMO_MODE)),,$(FAKE_GPU_HELM_ARGS)) $(HELM_ARGS)

.PHONY: kind-demo
kind-demo: ## Docker host: cluster (real GPU if nvidia-smi works, else fake GPU), images, chart, e2e suite, then the sample
	@echo "== kind demo in $(KIND_DEMO_MODE) mode (cluster $(KIND_CLUSTER); make kind-down removes it)"
	$(MAKE) --no-print-directory $(if $(filter gpu,$(KIND_DEMO_MODE)),kind-up,kind-fake-gpu)
	$(MAKE) --no-print-directory images
	$(MAKE) --no-print-directory deploy-chart HELM_ARGS="$(KIND_DEMO_HELM_ARGS)"
	# The suite runs before the sample so that a one-GPU host has its GPU free for it.
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory deploy HELM_ARGS="$(KIND_DEMO_HELM_ARGS)"

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: chart
chart: ## Regenerate the chart's RBAC rules (from lpbyoc.rbac) and its CRD copy (from crds/)
	$(E2E_PYTHON) charts/generate.py
