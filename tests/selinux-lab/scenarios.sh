#!/bin/bash
# The SELinux lab's scenarios: run once per boot by root's login shell on the serial console
# (unconfined_u:unconfined_r:unconfined_t, as an admin's shell) from the 9p share. Each
# scenario NAME writes results/NAME/{rc,out,...}; results/NAME/avc is `ausearch` over the
# scenario's time window, results/all-avc over the whole boot. tests/tests/selinux_lab.rs
# asserts on them.
set -u
export LANG=C LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
R=/mnt/lab/results
rm -rf "$R"; mkdir -p "$R"
# ausearch -ts takes the locale's date (%x: mm/dd/yy in C) and a time.
stamp() { date '+%x %T'; }
windows=()
# scenario NAME FUNCTION: run FUNCTION with $out as its result dir.
scenario() {
  local name=$1 fn=$2
  out=$R/$name; mkdir -p "$out"
  local t0; t0=$(stamp)
  local s0; s0=$(date +%s)
  "$fn" >"$out/out" 2>&1
  echo $? >"$out/rc"
  echo $(( $(date +%s) - s0 )) >"$out/seconds"
  sleep 1
  windows+=("$name|$t0|$(stamp)")
}
collect_facts() {  # USER: what /usr/local/bin/lab-facts (tests/selinux-lab/lab-facts) wrote
  local home; home=$(getent passwd "$1" | cut -d: -f6)
  cp "$home/lab-facts.txt" "$out/facts" 2>/dev/null || echo "no $home/lab-facts.txt" >"$out/facts"
  rm -f "$home/lab-facts.txt"
}
registry_label() { stat -c %C /run/jupyter-session 2>&1; }
# run_unit NAME LINE...: a oneshot system service (its ExecStart= among the lines), started and
# waited for with systemctl (no D-Bus in the lab), its journal printed.
run_unit() {
  local name=$1; shift
  { echo "[Service]"; echo "Type=oneshot"; printf '%s\n' "$@"; } >"/run/systemd/system/$name.service"
  systemctl daemon-reload
  systemctl start "$name.service"
  local rc=$?
  journalctl -q -o cat -u "$name.service" | tail -20
  return $rc
}

env_facts() {
  getenforce; id -Z; uname -r
  semodule -l 2>/dev/null | grep -x jupyter_session || echo "module jupyter_session not loaded"
  # Made at boot by systemd-tmpfiles (etc/tmpfiles.d/jupyter-session.conf).
  echo "boot_registry_label=$(registry_label)" | tee "$out/boot_registry_label"
  ls -Z /usr/local/bin/jupyter-session /opt/jupyterhub/bin/jupyterhub
}

# A root shell makes the registry first (after a reboot without the tmpfiles entry, or after
# someone removed it): pamtester in the admin's shell with a stack of pam_jupyter alone.
registry_root_shell() {
  rm -rf /run/jupyter-session
  printf 'session required pam_jupyter.so\n' >/etc/pam.d/lab-root-shell
  pamtester -v lab-root-shell alice open_session close_session
  local rc=$?
  registry_label | tee "$out/registry_label"
  return $rc
}

# pamtester through the shipped stack (/etc/pam.d/jupyterhub) as a system service.
pamtester_shipped_stack() {
  run_unit lab-pamtester "ExecStart=/usr/bin/pamtester -v jupyterhub alice open_session close_session"
}

# jupyter-session exec as a system service (init_t -> jupyter_session_t), like a hub unit's child.
keeper_exec() {  # USER
  run_unit "lab-exec-$1" \
    "ExecStart=/usr/local/bin/jupyter-session exec --service jupyterhub --user $1 -- /usr/local/bin/lab-facts"
  local rc=$?
  collect_facts "$1"
  registry_label | tee "$out/registry_label"
  return $rc
}
exec_alice() { keeper_exec alice; }
exec_bob() { keeper_exec bob; }

# A unit with PAMName= and User= (what SystemdSpawner makes): pam_jupyter inside systemd.
pamname_unit() {
  run_unit lab-pamname PAMName=jupyterhub User=alice ExecStart=/usr/local/bin/lab-facts
  local rc=$?
  collect_facts alice
  return $rc
}

# The hub as a system service (init_t -> jupyterhub_t) with SessionSpawner; login and spawn
# over HTTP with curl, the server through the keeper as alice.
hub_session_spawner() {
  local base=http://127.0.0.1:8000 jar=$out/cookies i code
  # The proxy started by the admin's shell (unconfined_t), not by the hub: the hub gives a proxy
  # it starts 10 s, too short for node under TCG. Jitless: Debian's policy gives unconfined_t no
  # execmem (the allow_execmem boolean is off), which V8's JIT needs.
  printf '[Service]\nEnvironment=CONFIGPROXY_AUTH_TOKEN=lab-proxy-token\nWorkingDirectory=/var/lib/jupyterhub\nExecStart=%s\n' \
    "/opt/jupyterhub/bin/jupyterhub -f /etc/jupyterhub/jupyterhub_config.py" >/run/systemd/system/lab-hub.service
  systemctl daemon-reload
  CONFIGPROXY_AUTH_TOKEN=lab-proxy-token NODE_OPTIONS=--jitless setsid /opt/jupyterhub/node/node_modules/.bin/configurable-http-proxy \
    --ip 127.0.0.1 --port 8000 --api-ip 127.0.0.1 --api-port 8001 \
    --error-target http://127.0.0.1:8081/hub/error >"$out/proxy.log" 2>&1 </dev/null &
  local proxy=$!
  for i in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:8001/api/routes" -H "Authorization: token lab-proxy-token" && break
    kill -0 $proxy 2>/dev/null || { echo "the proxy exited"; break; }
    sleep 1
  done
  echo "proxy up after ${i}s"
  systemctl start lab-hub.service
  for i in $(seq 1 180); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$base/hub/login") && [ "$code" = 200 ] && break
    systemctl is-active --quiet lab-hub.service || { echo "the hub exited"; break; }
    sleep 1
  done
  echo "hub up after ${i}s (HTTP $code)"
  curl -s -c "$jar" -b "$jar" -o /dev/null "$base/hub/login"
  local xsrf; xsrf=$(awk '$6 == "_xsrf" {print $7}' "$jar" | tail -1)
  code=$(curl -s -c "$jar" -b "$jar" -o "$out/login.html" -w '%{http_code}' \
    --data-urlencode "username=alice" --data-urlencode "password=lab-alice-pw" \
    --data-urlencode "_xsrf=$xsrf" "$base/hub/login?next=")
  echo "login: HTTP $code" | tee "$out/login"
  curl -s -c "$jar" -b "$jar" -o /dev/null -w 'spawn: HTTP %{http_code}\n' "$base/hub/spawn"
  # At most 300 s (the hub's own start_timeout is 240 s), so that the VM always powers off.
  local deadline=$(( $(date +%s) + 300 ))
  for i in $(seq 1 1000); do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no server within 300 s"; break; }
    code=$(curl -s --max-time 20 -c "$jar" -b "$jar" -o "$out/server.json" -w '%{http_code}' "$base/user/alice/api")
    [ "$code" = 200 ] && break
    systemctl is-active --quiet lab-hub.service || { echo "the hub exited"; break; }
    sleep 1
  done
  echo "server: HTTP $code after ${i}s" | tee "$out/server"
  local pid
  for pid in $(pgrep -u alice -f jupyterhub-singleuser); do
    echo "$(cat /proc/$pid/attr/current | tr -d '\0') $(tr '\0' ' ' </proc/$pid/cmdline)"
  done | tee "$out/server_processes"
  pid=$(pgrep -u alice -f jupyterhub-singleuser | head -1)
  if [ -n "$pid" ]; then
    local xdg; xdg=$(tr '\0' '\n' </proc/$pid/environ | sed -n 's/^XDG_RUNTIME_DIR=//p')
    echo "xdg=$xdg" >"$out/facts"
    echo "xdg_label=$(stat -c %C "$xdg")" >>"$out/facts"
    echo "context=$(tr -d '\0' </proc/$pid/attr/current)" >>"$out/facts"
  fi
  ps -e -o label,user,pid,args | grep -E 'jupyter|configurable' | grep -v grep | tee "$out/processes"
  systemctl stop lab-hub
  kill $proxy
  journalctl -q -o cat -u lab-hub | grep -v '^\[D' | tail -150
  [ "$code" = 200 ]
}

scenario env env_facts
scenario registry_root_shell registry_root_shell
scenario pamtester_shipped_stack pamtester_shipped_stack
scenario exec_alice exec_alice
scenario exec_bob exec_bob
scenario pamname_unit pamname_unit
scenario hub_session_spawner hub_session_spawner

for w in "${windows[@]}"; do
  IFS='|' read -r name t0 t1 <<<"$w"
  ausearch -i -m avc,user_avc,selinux_err -ts $t0 -te $t1 >"$R/$name/avc" 2>&1
done
ausearch -i -m avc,user_avc,selinux_err -ts boot >"$R/all-avc" 2>&1
echo done >"$R/done"
