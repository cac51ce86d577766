# Builds every image: docker buildx bake -f infra/docker/docker-bake.hcl [--push]
# REGISTRY=registry.example.com/switchboard TAG=0.1.0 docker buildx bake -f infra/docker/docker-bake.hcl --push
variable "REGISTRY" {
  default = "switchboard"
}

variable "TAG" {
  default = "dev"
}

group "default" {
  targets = ["app"]
}

target "app" {
  name       = app
  matrix     = { app = ["ingress", "page-router", "message-service", "subscription-service", "console", "fake-meta"] }
  context    = "."
  dockerfile = "infra/docker/Dockerfile"
  args       = { APP = app }
  tags       = ["${REGISTRY}/${app}:${TAG}"]
}
