"""Local delivery throughput: a queue run of N messages into mboxes and
maildirs, exim_py against real Exim 4.96 on the same configuration.

Each MTA gets its own copy of the configuration, spool and mail directory;
the same N messages (spread over a few recipients, half to mboxes, half to
maildirs) are queued with -odq, then one ``-q`` run delivers them all.
Prints the wall-clock time of each queue run, messages per second and the
ratio.  Run as root (Exim's -C configuration must be root-owned; Exim then
runs as Debian-exim, which must own its spool, log and mail directories)::

    /opt/venv/bin/python bench/delivery_bench.py [N]
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

CONFIG = """\
primary_hostname = bench.test
qualify_domain = bench.test
keep_environment =
spool_directory = DIR/spool
log_file_path = DIR/log/%slog
queue_run_max = 1
begin routers
maildirs:
  driver = accept
  local_parts = md0 : md1 : md2 : md3
  transport = maildir
mboxes:
  driver = accept
  local_parts = mb0 : mb1 : mb2 : mb3
  transport = mbox
begin transports
mbox:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
  envelope_to_add
  return_path_add
  delivery_date_add
maildir:
  driver = appendfile
  directory = DIR/maildir/$local_part_data
  maildir_format
  user = Debian-exim
begin retry
* * F,1h,10m
"""

RECIPIENTS = ["md0", "mb0", "md1", "mb1", "md2", "mb2", "md3", "mb3"]
BODY = "Subject: bench\n\n" + "A line of text in the body of the message.\n" * 40


def prepare(root, name):
    d = os.path.join(root, name)
    user = pwd.getpwnam("Debian-exim")
    for sub in ("spool", "log", "mail", "maildir"):
        os.makedirs(os.path.join(d, sub))
        os.chown(os.path.join(d, sub), user.pw_uid, user.pw_gid)
    conf = os.path.join(d, "exim.conf")
    with open(conf, "w") as f:
        f.write(CONFIG.replace("DIR", d))
    os.chmod(conf, 0o644)
    os.chmod(d, 0o755)
    return d, conf


def queue_messages(command, count):
    for i in range(count):
        rcpt = RECIPIENTS[i % len(RECIPIENTS)] + "@bench.test"
        subprocess.run(command + ["-odq", "-f", "sender@bench.test", rcpt], input=BODY,
                       text=True, check=True, capture_output=True)


def timed_queue_run(command):
    start = time.monotonic()
    subprocess.run(command + ["-q"], check=True, capture_output=True)
    return time.monotonic() - start


def delivered(d):
    count = 0
    for root, _dirs, files in os.walk(os.path.join(d, "maildir")):
        count += sum(1 for f in files if "/new" in root + "/")
    for name in os.listdir(os.path.join(d, "mail")):
        with open(os.path.join(d, "mail", name)) as f:
            count += sum(1 for line in f if line.startswith("From "))
    return count


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 200
    exim = shutil.which("exim4") or "/usr/sbin/exim4"
    root = tempfile.mkdtemp(prefix="delivery-bench-")
    os.chmod(root, 0o755)
    try:
        ex_dir, ex_conf = prepare(root, "exim4")
        py_dir, py_conf = prepare(root, "exim_py")
        ex_cmd = [exim, "-C", ex_conf]
        py_cmd = [sys.executable, "-m", "exim_py", "-C", py_conf]
        queue_messages(ex_cmd, count)
        queue_messages(py_cmd, count)
        ex_time = timed_queue_run(ex_cmd)
        py_time = timed_queue_run(py_cmd)
        print("messages: %d (queued with -odq, delivered by one -q run)" % count)
        print("exim4   : %6.2f s  %7.1f msg/s  delivered %d" % (ex_time, count / ex_time,
                                                             delivered(ex_dir)))
        print("exim_py : %6.2f s  %7.1f msg/s  delivered %d" % (py_time, count / py_time,
                                                             delivered(py_dir)))
        print("ratio exim_py/exim4 throughput: %.2f" % (ex_time / py_time))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
