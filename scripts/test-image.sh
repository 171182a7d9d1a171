#!/usr/bin/env bash
# The container image: build the repository's Dockerfile with podman and run the server from
# the built image's filesystem the way a container runtime would start it.
#
# Containers cannot start on the machines this runs on, and no image registry is reachable, so:
# - the runtime stage's base (the Dockerfile's last FROM, Debian 12 "slim") is bootstrapped here
#   from Debian's packages with debootstrap (cached under ~/.cache/errands/image) and imported
#   into podman under that name;
# - the image is built with `--build-arg BINARY=prebuilt` from the workspace's release binary, so
#   nothing is compiled inside it (the `build` stage, which needs the Rust image, is skipped);
# - its filesystem is exported and run in a chroot (unshare --root) inside private network, mount
#   and pid namespaces, with the image's ENV, USER, WORKDIR and CMD; the port stays the image's
#   0.0.0.0:7733, since the network namespace is this test's own.
# Then /healthz, the HEALTHCHECK command, and one job end to end: enqueued over HTTP, processed by
# a worker (the Rust quickstart example), its result read back, its store on the /data volume.
#
# Usage: bash scripts/test-image.sh   (needs root; scripts/test.sh runs it after the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cache="${XDG_CACHE_HOME:-$HOME/.cache}/errands/image"
image=localhost/errands-image-test:latest
mkdir -p "$cache"

need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  echo "-- installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

scratch=$(mktemp -d)
dangling_before=$(podman images --all --quiet --filter dangling=true | sort)
cleanup() {
  podman rmi -f "$image" >/dev/null 2>&1 || true
  # The build's stage images (the prebuilt binary's) are left untagged: remove those it made.
  comm -13 <(echo "$dangling_before") <(podman images --all --quiet --filter dangling=true | sort) \
    | xargs -r podman rmi -f >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# The runtime base, e.g. docker.io/library/debian:bookworm-slim: the last FROM of the Dockerfile.
base=$(awk 'toupper($1) == "FROM" { name = $2 } END { print name }' Dockerfile)
suite=${base##*:}
suite=${suite%%-*}
echo "-- base image $base (Debian $suite, bootstrapped locally)"
if ! podman image exists "$base"; then
  tarball="$cache/debian-$suite-minbase.tar"
  if [[ ! -f "$tarball" ]]; then
    started=$SECONDS
    debootstrap --variant=minbase "$suite" "$scratch/base" >"$scratch/debootstrap.log" 2>&1 \
      || { tail -20 "$scratch/debootstrap.log"; exit 1; }
    # Trimmed as Debian's slim images are: no package caches, documentation or locales.
    rm -rf "$scratch"/base/var/cache/apt/archives/*.deb "$scratch"/base/var/lib/apt/lists/* \
      "$scratch"/base/usr/share/doc/* "$scratch"/base/usr/share/man/* "$scratch"/base/usr/share/locale/*
    tar -C "$scratch/base" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$scratch/base"
    echo "bootstrapped in $((SECONDS - started))s"
  fi
  podman import --quiet "$tarball" "$base" >/dev/null
fi

echo "-- podman build (prebuilt binary)"
binary="$target/release/errands"
[[ -x "$binary" ]] || { echo "$binary missing: run cargo build --release first" >&2; exit 1; }
mkdir -p "$scratch/context"
strip -o "$scratch/context/errands" "$binary"
started=$SECONDS
# chroot isolation: the sandbox has no cgroup setup an OCI runtime accepts. Docker format, as
# the OCI format has no HEALTHCHECK.
podman build --quiet --isolation chroot --format docker --build-arg BINARY=prebuilt \
  -f "$root/Dockerfile" -t "$image" "$scratch/context" >/dev/null
echo "built in $((SECONDS - started))s, $(podman image inspect "$image" --format '{{.Size}}') bytes"

echo "-- the image's configuration"
podman image inspect "$image" >"$scratch/inspect.json"
python3 - "$scratch/inspect.json" "$scratch/run.env" <<'EOF'
import json, shlex, sys

[inspected] = json.load(open(sys.argv[1]))
config = inspected["Config"]
env = dict(item.split("=", 1) for item in config["Env"])
problems = []
if config.get("User") in (None, "", "root", "0"):
    problems.append(f"runs as root (User={config.get('User')!r})")
if not env.get("ERRANDS_LISTEN", "").startswith("0.0.0.0:"):
    problems.append(f"ERRANDS_LISTEN={env.get('ERRANDS_LISTEN')!r}, not 0.0.0.0")
if "/data" not in (config.get("Volumes") or {}):
    problems.append("no /data volume")
if not env.get("ERRANDS_DB", "").startswith("/data/"):
    problems.append(f"ERRANDS_DB={env.get('ERRANDS_DB')!r} is not on the volume")
# podman lists a Docker-format image's HEALTHCHECK beside its OCI configuration.
health = (inspected.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
if health[:1] != ["CMD"]:
    problems.append(f"no exec-form HEALTHCHECK: {health!r}")
if problems:
    sys.exit("image configuration: " + "; ".join(problems))
with open(sys.argv[2], "w") as out:
    out.write(f"user={shlex.quote(config['User'])}\n")
    out.write(f"workdir={shlex.quote(config.get('WorkingDir') or '/')}\n")
    out.write("cmd=(" + " ".join(map(shlex.quote, config["Cmd"])) + ")\n")
    out.write("health=(" + " ".join(map(shlex.quote, health[1:])) + ")\n")
    out.write("image_env=(" + " ".join(map(shlex.quote, config["Env"])) + ")\n")
    out.write(f"port={env['ERRANDS_LISTEN'].rsplit(':', 1)[1]}\n")
    out.write(f"db={shlex.quote(env['ERRANDS_DB'])}\n")
print(f"user {config['User']}, cmd {config['Cmd']}, healthcheck {health[1:]}, env {sorted(env)}")
EOF

echo "-- export the image's filesystem"
rootfs="$scratch/rootfs"
mkdir -p "$rootfs"
container=$(podman create "$image")
podman export "$container" | tar -C "$rootfs" -xf -
podman rm -f "$container" >/dev/null 2>&1  # it complains of no systemd to drop its health timer

worker="$target/release/examples/quickstart"
[[ -x "$worker" ]] || cargo build --release -q -p errands-client --example quickstart

echo "-- run it as the image would, in private namespaces"
export rootfs worker scratch
# shellcheck disable=SC2016  # expanded by the inner shell, inside the namespaces
unshare --net --mount --pid --fork --mount-proc bash -euo pipefail -c '
  source "$scratch/run.env"
  ip link set lo up
  mount -t proc proc "$rootfs/proc"
  mount --rbind /dev "$rootfs/dev"
  uid=$(awk -F: -v u="$user" "\$1 == u || \$3 == u { print \$3 }" "$rootfs/etc/passwd")
  gid=$(awk -F: -v u="$user" "\$1 == u || \$3 == u { print \$4 }" "$rootfs/etc/passwd")
  home=$(awk -F: -v u="$user" "\$1 == u || \$3 == u { print \$6 }" "$rootfs/etc/passwd")
  [[ -n "$uid" ]] || { echo "user $user is not in the image" >&2; exit 1; }
  # What a runtime gives the process: the image ENV, HOME from its passwd entry, and its
  # USER (uid and primary group), WORKDIR and CMD.
  in_image() {
    unshare --root="$rootfs" --wd="$workdir" --setuid="$uid" --setgid="$gid" \
      /usr/bin/env -i HOME="$home" HOSTNAME=errands "${image_env[@]}" "$@"
  }
  in_image "${cmd[@]}" >"$scratch/server.log" 2>&1 &
  url="http://127.0.0.1:$port"
  for _ in $(seq 300); do
    curl -sf "$url/healthz" >/dev/null && break
    kill -0 $! 2>/dev/null || { cat "$scratch/server.log"; exit 1; }
    sleep 0.1
  done
  curl -sf "$url/healthz" >/dev/null || { echo "no /healthz"; cat "$scratch/server.log"; exit 1; }
  grep -q "listen=0.0.0.0:$port" "$scratch/server.log" || { echo "not on 0.0.0.0"; cat "$scratch/server.log"; exit 1; }
  echo "/healthz answers; the server listens on 0.0.0.0:$port as uid $uid"
  in_image "${health[@]}" || { echo "HEALTHCHECK ${health[*]} failed"; exit 1; }
  echo "HEALTHCHECK (${health[*]}) passes"

  id=$(curl -sf -X POST "$url/v1/jobs" -H "content-type: application/json" \
    -d "{\"kind\": \"thumbnail\", \"queue\": \"images\", \"args\": {\"image\": \"image.png\", \"width\": 64}}" \
    | python3 -c "import json, sys; print(json.load(sys.stdin)[\"id\"])")
  ERRANDS_URL="$url" "$worker" >"$scratch/worker.log"
  for _ in $(seq 100); do
    state=$(curl -sf "$url/v1/jobs/$id" | python3 -c "import json, sys; j = json.load(sys.stdin); print(j[\"state\"], j.get(\"result\"))")
    [[ "$state" == completed* ]] && break
    sleep 0.1
  done
  [[ "$state" == "completed image.png.64px.webp" ]] || { echo "job $id: $state"; cat "$scratch/worker.log"; exit 1; }
  echo "job $id enqueued over HTTP, completed by a worker: ${state#completed }"
  owner=$(stat -c %u "$rootfs$db")
  [[ "$owner" == "$uid" ]] || { echo "store $db owned by $owner, not $uid"; exit 1; }
  echo "store at $db (on the volume), owned by uid $uid"
'
echo "image: all checks passed"
