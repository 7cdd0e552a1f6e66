#!/bin/sh
# CRIU spike, run inside the guest: what does criu 3.17 make of a real
# airlock sandbox? Prints each attempt's command, result and the log's errors.
B=/airlock/build
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "== criu"; criu --version; criu check 2>&1 | tail -3
mkdir -p /tmp/spike; cd /tmp/spike || exit 1

start_sandbox() {
  $B/airlock run "$@" -- sh -c 'exec </dev/null >/dev/null 2>&1; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done' \
    > /tmp/spike/sb.out 2>&1 &
  CLI=$!
  sleep 3
  INIT=$(pgrep -f 'airlock-init' | head -1)
  echo "cli=$CLI init=$INIT"
}
attempt() {
  name=$1; shift
  rm -rf "d-$name"; mkdir "d-$name"
  echo "== attempt $name: criu dump -t $INIT $*"
  if criu dump -t "$INIT" -D "d-$name" -v4 -o dump.log "$@"; then
    echo "RESULT $name: dump OK"; ls "d-$name" | head -50 | tr '\n' ' '; echo
    LAST_OK="d-$name"
  else
    echo "RESULT $name: dump FAILED"; grep -E 'Error|Warn' "d-$name/dump.log" | tail -15; echo "-- log tail"; tail -25 "d-$name/dump.log"
    cp "d-$name/dump.log" "$AIRLOCK_OUT/dump-$name.log" 2>/dev/null
  fi
}

start_sandbox --checkpointable
echo "== mountinfo inside"; cat /proc/$INIT/mountinfo
echo "== fds of init"; ls -l /proc/$INIT/fd
echo "== ns"; ls -l /proc/$INIT/ns
echo "== status"; grep -E 'NoNewPrivs|Seccomp|Cap' /proc/$INIT/status

CHAN=$(readlink /proc/$INIT/fd/3 | tr -dc 0-9)
echo "channel inode $CHAN"
attempt extunix --leave-running --external "unix[$CHAN]" --external 'mnt[]' --manage-cgroups=ignore
echo "== counter at dump: $(cat /proc/$INIT/root/tmp/count 2>/dev/null)"
sleep 1
echo "== counter now: $(cat /proc/$INIT/root/tmp/count 2>/dev/null)"
if [ -n "${LAST_OK:-}" ]; then
  LAYER=$(ls -d /var/lib/airlock/images/host/*/ | head -1)
  mkdir -p /tmp/spike/rroot /tmp/spike/u /tmp/spike/w
  mount -t overlay -o "lowerdir=$LAYER,upperdir=/tmp/spike/u,workdir=/tmp/spike/w" none /tmp/spike/rroot || echo "overlay for the restore root failed"
  echo "== restore attempt from $LAST_OK, root /tmp/spike/rroot (overlay in the host's mount ns), channel via inherit-fd"
  python3 - "$LAST_OK" "$CHAN" "$INIT" <<'PY'
import os, socket, subprocess, sys, time
d, chan, init = sys.argv[1], sys.argv[2], sys.argv[3]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
fd = b.fileno(); os.set_inheritable(fd, True)
cmd = ["criu", "restore", "-D", d, "-v4", "-o", "restore.log", "-d", "--pidfile", "/tmp/spike/restored.pid",
       "--root", "/tmp/spike/rroot", "--external", "mnt[]", "--manage-cgroups=ignore",
       "--inherit-fd", "fd[%d]:socket:[%s]" % (fd, chan)]
print(" ".join(cmd), flush=True)
r = subprocess.run(cmd, pass_fds=(fd,))
print("RESULT restore rc", r.returncode, flush=True)
if r.returncode == 0:
    pid = open("/tmp/spike/restored.pid").read().strip()
    print("restored init pid", pid)
    time.sleep(1.5)
    c1 = open("/proc/%s/root/tmp/count" % pid).read().strip()
    time.sleep(1)
    c2 = open("/proc/%s/root/tmp/count" % pid).read().strip()
    print("restored counter", c1, "->", c2)
    print(open("/proc/%s/status" % pid).read().split("NoNewPrivs")[1][:40].replace("\n", " "))
PY
  grep -E 'Error' "$LAST_OK/restore.log" | tail -15
  cp "$LAST_OK/restore.log" "$AIRLOCK_OUT/" 2>/dev/null
fi
kill $CLI; wait $CLI 2>/dev/null
echo done
