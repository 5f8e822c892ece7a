"""The operator's ``mqttd`` command, run as a user runs it, against a test's data dir."""
import os
import subprocess
import sys


def mqttd_command(*argv):
    """The installed ``mqttd`` console script; CompletedProcess (status checked by the
    caller). MQTTD_CONFIG is emptied so no /etc/mqttd/mqttd.toml of this host is read."""
    script = os.path.join(os.path.dirname(sys.executable), "mqttd")
    return subprocess.run([script, *argv], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MQTTD_CONFIG=""))


def mqttd_cli(data_dir, *argv):
    """``mqttd ARGV --data-dir DATA_DIR``: a command on the appliance's database."""
    return mqttd_command(*argv, "--data-dir", data_dir)


def cli_ok(testcase, broker, *argv):
    """Run ``mqttd ARGV`` on ``broker``'s data dir; fail the test with its stderr and the
    broker's log unless it succeeded; its stdout."""
    run = mqttd_cli(broker.data_dir, *argv)
    testcase.assertEqual(run.returncode, 0, run.stderr + broker.tail())
    return run.stdout


def new_token(testcase, broker, account):
    """A new token of ``account`` (made by ``mqttd tokens add``, its last line)."""
    return cli_ok(testcase, broker, "tokens", "add", account).strip().splitlines()[-1]
