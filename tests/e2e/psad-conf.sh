#!/bin/sh
# psad-conf.sh DIR: a private psad 2.4.6 configuration under DIR for `psad -c DIR/etc/psad.conf
# -A -m FILE` (nothing under /etc or /var is written). Used by tests/e2e_alert.rs.
set -eu
D=$1
mkdir -p "$D/etc" "$D/log" "$D/run" "$D/lib"
cp -r /etc/psad/. "$D/etc/"
# psad 2.4.6 bug: "flags:0" parses to no flag test, so "SCAN NULL" never matches; "flags:N" does.
sed -i 's/msg:"SCAN NULL"; flags:0;/msg:"SCAN NULL"; flags:N;/' "$D/etc/signatures"
sed -i \
  -e "s|^PSAD_CONF_DIR .*|PSAD_CONF_DIR $D/etc;|" \
  -e "s|^PSAD_DIR .*|PSAD_DIR $D/log;|" \
  -e "s|^PSAD_RUN_DIR .*|PSAD_RUN_DIR $D/run;|" \
  -e "s|^PSAD_FIFO_DIR .*|PSAD_FIFO_DIR $D/lib;|" \
  -e "s|^IPT_SYSLOG_FILE .*|IPT_SYSLOG_FILE $D/messages;|" \
  -e "s|^HOSTNAME .*|HOSTNAME gw;|" \
  -e "s|^ALERTING_METHODS .*|ALERTING_METHODS noemail;|" \
  -e "s|^ENABLE_WHOIS_LOOKUPS .*|ENABLE_WHOIS_LOOKUPS N;|" \
  -e "s|^ENABLE_DNS_LOOKUPS .*|ENABLE_DNS_LOOKUPS N;|" \
  "$D/etc/psad.conf"
