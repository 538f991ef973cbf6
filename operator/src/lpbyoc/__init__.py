"""livepeer-byoc operator: run Hugging Face models as Livepeer BYOC workers on Kubernetes."""

__version__ = "0.1.0"
