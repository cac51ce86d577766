# Builds every production image: docker buildx bake -f infra/docker/docker-bake.hcl [--push]
# REGISTRY=registry.example.com/switchboard TAG=0.1.0 docker buildx bake -f infra/docker/docker-bake.hcl --push
# The fake Meta (packages/fake-meta, a test double) is not in that set: only a laptop cluster builds it,
#   docker buildx bake -f infra/docker/docker-bake.hcl local
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
  matrix     = { app = ["ingress", "page-router", "message-service", "subscription-service", "webhook-dispatcher", "console"] }
  context    = "."
  dockerfile = "infra/docker/Dockerfile"
  args       = { APP = app }
  tags       = ["${REGISTRY}/${app}:${TAG}"]
}

# Laptop clusters only (infra/k8s/overlays/local): never pushed with the release. The image keeps the
# recipe's NODE_ENV=production, so the fake Meta refuses to start unless the pod overrides it.
group "local" {
  targets = ["fake-meta"]
}

target "fake-meta" {
  context    = "."
  dockerfile = "infra/docker/Dockerfile"
  args       = { APP = "fake-meta" }
  tags       = ["switchboard/fake-meta:dev"]
}
