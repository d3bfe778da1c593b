//! `/begin.sh`: the first-boot script every provisioned node runs (from
//! cloud-init's runcmd or the preseed's first-boot unit). It reports
//! "installed", fetches the site's repository tarball, runs the repository's
//! own `begin.sh` with the profile and tags (the seed plan's Ansible
//! bootstrap), and reports "joined" when that succeeds.
//!
//! Owns the script text. It is static: everything node-specific arrives as
//! arguments, so one cached body serves every node.

pub fn render() -> String {
    r#"#!/bin/sh
# kindling first-boot bootstrap. Served by the appliance at /begin.sh.
# usage: begin.sh --url http://APPLIANCE/ --mac MAC --profile NAME --tags k=v,k=v
set -u
URL="" MAC="" PROFILE="" TAGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --url) URL="$2"; shift 2 ;;
    --mac) MAC="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --tags) TAGS="$2"; shift 2 ;;
    *) echo "begin.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$URL" ] || [ -z "$MAC" ]; then
  echo "begin.sh: --url and --mac are required" >&2
  exit 2
fi

post_event() {
  body="{\"event\":\"$1\",\"profile\":\"$PROFILE\",\"detail\":\"$2\"}"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 10 -H 'Content-Type: application/json' --data "$body" "${URL}nodes/${MAC}/events" >/dev/null || true
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 10 -O /dev/null --header='Content-Type: application/json' --post-data="$body" "${URL}nodes/${MAC}/events" || true
  fi
}

fetch() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --retry 5 -o "$2" "$1"
  else
    wget -q -O "$2" "$1"
  fi
}

post_event installed "first boot"

mkdir -p /etc/kindling
printf 'KINDLING_URL=%s\nKINDLING_MAC=%s\nKINDLING_PROFILE=%s\nKINDLING_TAGS=%s\n' \
  "$URL" "$MAC" "$PROFILE" "$TAGS" > /etc/kindling/node.env

REPO=/opt/kindling-repo
if fetch "${URL}repo.tar.gz" /run/kindling-repo.tar.gz; then
  rm -rf "$REPO" && mkdir -p "$REPO"
  tar -xzf /run/kindling-repo.tar.gz -C "$REPO" || { post_event installed "repo unpack failed"; exit 1; }
  if [ -f "$REPO/begin.sh" ]; then
    if (cd "$REPO" && sh ./begin.sh --profile "$PROFILE" --tags "$TAGS"); then
      post_event joined "repository bootstrap finished"
    else
      post_event installed "repository bootstrap failed: $?"
      exit 1
    fi
  else
    post_event joined "no repository bootstrap to run"
  fi
else
  post_event installed "no repository tarball"
fi
"#
    .to_string()
}
