"""The Kubeflow pipeline (wiring only) and its compiled YAML."""
