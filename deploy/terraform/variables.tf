variable "kubeconfig_path" {
  description = "Kubeconfig of the cluster to deploy to."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "Context of the kubeconfig to use; null for its current context (docker-desktop in the seed)."
  type        = string
  default     = null
}
