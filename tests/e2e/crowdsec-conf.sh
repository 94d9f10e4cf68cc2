#!/bin/sh
# crowdsec-conf.sh DIR PORT REPO: a private CrowdSec 1.4.6 configuration under DIR (nothing in /etc or /var
# is written; the package's offline hub in /usr/share/crowdsec/hub is read), LAPI on
# 127.0.0.1:PORT (run it inside the test's network namespace), with statewall's parser and
# scenario from REPO/contrib/crowdsec. Used by tests/e2e_alert.rs.
set -eu
D=$1 PORT=$2 REPO=$3 H=/usr/share/crowdsec/hub
mkdir -p "$D/parsers/s00-raw" "$D/parsers/s01-parse" "$D/parsers/s02-enrich" "$D/scenarios" \
    "$D/postoverflows" "$D/data"
cat > "$D/config.yaml" <<EOC
common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: $D/
  data_dir: $D/data/
  simulation_path: $D/simulation.yaml
  hub_dir: $H/
  index_path: $H/.index.json
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: $D/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: "no"
  hub_branch: master
db_config:
  type: sqlite
  db_path: $D/data/crowdsec.db
  use_wal: false
api:
  client:
    credentials_path: $D/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 127.0.0.1:$PORT
    profiles_path: $D/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
EOC
printf 'simulation: off\n' > "$D/simulation.yaml"
: > "$D/acquis.yaml"
cat > "$D/profiles.yaml" <<'EOC'
name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
 - type: ban
   duration: 4h
on_success: break
EOC
ln -sfn /etc/crowdsec/patterns "$D/patterns"
# Hub items are enabled by linking them (never `cscli ... install`: it downloads).
ln -sf $H/parsers/s00-raw/crowdsecurity/syslog-logs.yaml "$D/parsers/s00-raw/"
ln -sf $H/parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml "$D/parsers/s02-enrich/"
# statewall's own parser and scenario, as shipped in contrib/crowdsec (copied: a symlink
# that does not point into the hub is ignored).
cp "$REPO/contrib/crowdsec/parsers/s01-parse/statewall-logs.yaml" "$D/parsers/s01-parse/"
cp "$REPO/contrib/crowdsec/scenarios/statewall-scan.yaml" "$D/scenarios/"
# The agent always logs in to a LAPI: register a machine (writes the DB directly, no LAPI needed).
cscli -c "$D/config.yaml" machines add statewall-test --password "statewall-test-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" \
    -f "$D/local_api_credentials.yaml" --url "http://127.0.0.1:$PORT/" >/dev/null 2>&1
