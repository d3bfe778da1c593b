//! `/begin.sh`: the first-boot script every provisioned node runs (from
//! cloud-init's runcmd or the preseed's first-boot unit). It reports
//! "installed"; when the appliance serves a node agent (`--agent-sha256`),
//! fetches it by that hash, refuses it unless its bytes hash to it, and
//! runs it (the agent reports each step, and its failure, itself); then
//! fetches the site's repository tarball, runs the repository's own
//! `begin.sh` with the profile and tags (the seed plan's Ansible
//! bootstrap), and reports "joined" when that succeeds (a claim: the
//! appliance decides `joined` from its own catalog).
//!
//! `--root DIR` puts every file it writes under DIR and passes it to the
//! agent (which then starts nothing): for tests, never on a node.
//!
//! Owns the script text. It is static: everything node-specific arrives as
//! arguments, so one cached body serves every node.

pub fn render() -> String {
    r#"#!/bin/sh
# kindling first-boot bootstrap. Served by the appliance at /begin.sh.
# usage: begin.sh --url http://APPLIANCE/ --mac MAC --profile NAME --tags k=v,k=v
#                 [--agent-sha256 HEX] [--root DIR]
set -u
URL="" MAC="" PROFILE="" TAGS="" AGENT="" ROOT="" AGENT_FAILED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL="$2"; shift 2 ;;
    --mac) MAC="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --tags) TAGS="$2"; shift 2 ;;
    --agent-sha256) AGENT="$2"; shift 2 ;;
    --root) ROOT="${2%/}"; shift 2 ;;
    *) echo "begin.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$URL" ] || [ -z "$MAC" ]; then
  echo "begin.sh: --url and --mac are required" >&2
  exit 2
fi

post() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 10 -H 'Content-Type: application/json' --data "$1" "${URL}nodes/${MAC}/events" >/dev/null || true
  elif command -v timeout >/dev/null 2>&1 && command -v wget >/dev/null 2>&1; then
    # timeout(1), not wget -T: some static busybox builds crash on -T.
    timeout 10 wget -q -O /dev/null --header='Content-Type: application/json' --post-data="$1" "${URL}nodes/${MAC}/events" || true
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O /dev/null --header='Content-Type: application/json' --post-data="$1" "${URL}nodes/${MAC}/events" || true
  fi
}
post_event() { post "{\"event\":\"$1\",\"profile\":\"$PROFILE\",\"detail\":\"$2\"}"; }
post_failed() { post "{\"event\":\"failed\",\"step\":\"$1\",\"error\":\"$2\"}"; }
# A node whose agent failed has not joined, whatever the site's bootstrap did.
claim_joined() { if [ "$AGENT_FAILED" = 0 ]; then post_event joined "$1"; fi; }

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --retry 5 -o "$2" "$1"
  else
    wget -q -O "$2" "$1"
  fi
}

post_event installed "first boot"

mkdir -p "$ROOT/etc/kindling" "$ROOT/run"
printf 'KINDLING_URL=%s\nKINDLING_MAC=%s\nKINDLING_PROFILE=%s\nKINDLING_TAGS=%s\n' \
  "$URL" "$MAC" "$PROFILE" "$TAGS" > "$ROOT/etc/kindling/node.env"

if [ -n "$AGENT" ]; then
  BIN="$ROOT/usr/local/sbin/kindling-node"
  mkdir -p "$ROOT/usr/local/sbin"
  rm -f "$BIN.part"
  if ! fetch "${URL}by-hash/sha256/${AGENT}" "$BIN.part"; then
    rm -f "$BIN.part"
    echo "begin.sh: the node agent could not be fetched" >&2
    post_failed agent-fetch "the node agent could not be fetched from ${URL}by-hash/sha256/${AGENT}"
    exit 1
  fi
  GOT=$(sha256sum "$BIN.part" | cut -d' ' -f1)
  if [ "$GOT" != "$AGENT" ]; then
    rm -f "$BIN.part"
    echo "begin.sh: the node agent's sha256 is $GOT, not $AGENT: refused" >&2
    post_failed agent-fetch "the node agent fetched has sha256 $GOT, not $AGENT: refused"
    exit 1
  fi
  chmod 0755 "$BIN.part" && mv -f "$BIN.part" "$BIN"
  # The agent reports each step, and its failure, itself; the site's own
  # bootstrap below still runs, and the script's status says it failed.
  if [ -n "$ROOT" ]; then
    "$BIN" --root "$ROOT" || AGENT_FAILED=1
  else
    "$BIN" || AGENT_FAILED=1
  fi
fi

REPO="$ROOT/opt/kindling-repo"
if fetch "${URL}repo.tar.gz" "$ROOT/run/kindling-repo.tar.gz"; then
  rm -rf "$REPO" && mkdir -p "$REPO"
  tar -xzf "$ROOT/run/kindling-repo.tar.gz" -C "$REPO" || { post_event installed "repo unpack failed"; exit 1; }
  if [ -f "$REPO/begin.sh" ]; then
    if (cd "$REPO" && sh ./begin.sh --profile "$PROFILE" --tags "$TAGS"); then
      claim_joined "repository bootstrap finished"
    else
      post_event installed "repository bootstrap failed: $?"
      exit 1
    fi
  else
    claim_joined "no repository bootstrap to run"
  fi
else
  post_event installed "no repository tarball"
fi
exit "$AGENT_FAILED"
"#
    .to_string()
}
