"""-M and its relatives: acting on queued messages by id (spec chapter "The
Exim command line", -M options).

-M delivers (forced: retry times ignored, frozen messages thawed), -Mc
delivers respecting retry times, -Mf / -Mt freeze and thaw, -Mrm removes,
-Mg gives up (bounces what is undelivered), -Mar adds recipients, -Mmd
marks recipients delivered, -Mmad all of them, -Mes changes the sender, -Mvh / -Mvb / -Mvl show the header file, the
body file and the message log.  Messages and exit codes are Exim's.
"""

import getpass
import os
import re
import sys
import time

from exim_py.delivery.engine import deliver_message, run_blocking

_ID_RE = re.compile(r"^[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}$|"
                    r"^[0-9A-Za-z]{6}-[0-9A-Za-z]{11}-[0-9A-Za-z]{4}$")


def _who():
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def log_line_mode(inv):
    """exim_py -z TEXT: TEXT goes to the main log as a line of its own."""
    from exim_py import cli, config as configmod
    from exim_py.log import Logger
    config = configmod.load(cli.config_path(inv), inv.macros or None)
    Logger(config).main(inv.log_text)
    return 0


def message_action_mode(inv):
    """exim_py -M... ID ...: see the module docstring."""
    from exim_py import cli, config as configmod
    from exim_py.log import Logger
    from exim_py.spool import Spool
    flag = inv.mode_flag
    config = configmod.load(cli.config_path(inv), inv.macros or None)
    spool = Spool.from_config(config)
    spool.make_directories()
    logger = Logger(config)
    args = list(inv.args)
    if flag in ("-Mar", "-Mmd", "-Mes"):
        if len(args) < 2:
            sys.stderr.write("exim_py: %s requires a message id and addresses\n" % flag)
            return 1
        ids, addresses = args[:1], args[1:]
    else:
        ids, addresses = args, []
    if not ids:
        sys.stderr.write("exim_py: no message ids given after %s option\n" % flag)
        return 1
    for message_id in ids:
        if not _ID_RE.match(message_id):
            sys.stderr.write("exim: malformed message id %s after %s option\n" % (message_id, flag))
            return 1
    if flag in ("-M", "-Mc"):
        return _deliver(config, spool, logger, ids, force=(flag == "-M"))
    status = 0
    for message_id in ids:
        status = max(status, ACTIONS[flag](config, spool, logger, message_id, addresses))
    return status


def _deliver(config, spool, logger, ids, force):
    def all_of_them():
        from twisted.internet import defer

        @defer.inlineCallbacks
        def go():
            for message_id in ids:
                outcome = yield deliver_message(config, spool, message_id, logger,
                                                force=force, thaw=force)
                if outcome.missing:
                    logger.main("Spool file %s-D not found" % message_id, message_id)
                elif outcome.locked:
                    sys.stdout.write("Spool file is locked (another process is handling "
                                     "this message)\n")
        return go()
    try:
        run_blocking(all_of_them)
    except Exception as e:   # a bug: say so briefly, and it is in the panic log
        logger.panic("delivery failed unexpectedly: %r" % (e,))
        sys.stderr.write("exim_py: delivery failed unexpectedly: %s\n" % (e,))
        return 1
    return 0


def _with_envelope(action):
    """Run ``action(config, spool, logger, message_id, addresses, envelope)`` with
    the message locked and read; print why not (exit status 1) if it cannot be."""
    def run(config, spool, logger, message_id, addresses):
        lock, env = _locked_envelope(spool, message_id)
        if lock is None:
            sys.stdout.write(env + "\n")
            return 1
        with lock:
            return action(config, spool, logger, message_id, addresses, env)
    run.__doc__ = action.__doc__
    return run


def _locked_envelope(spool, message_id):
    """(lock, envelope) or (None, message) when the message cannot be had."""
    from exim_py.spool import MessageLocked, MessageMissing
    try:
        lock = spool.lock(message_id)
    except MessageMissing:
        return None, "Spool data file for %s does not exist" % message_id
    except MessageLocked:
        return None, "Spool file for %s is locked (another process is handling this message)" \
            % message_id
    try:
        return lock, spool.read(message_id)
    except Exception as e:
        lock.release()
        return None, "Spool read error for %s-H: %s" % (message_id, e)


@_with_envelope
def _freeze(config, spool, logger, message_id, addresses, env):
    if env.frozen:
        sys.stdout.write("Message %s is already frozen\n" % message_id)
        return 1
    env.frozen = True
    env.spool_extra["frozen"] = int(time.time())
    spool.write_header(env)
    logger.main("frozen by %s" % _who(), message_id)
    sys.stdout.write("Message %s is now frozen\n" % message_id)
    return 0


@_with_envelope
def _thaw(config, spool, logger, message_id, addresses, env):
    if not env.frozen:
        sys.stdout.write("Message %s is not frozen\n" % message_id)
        return 1
    env.frozen = False
    env.manual_thaw = True
    spool.write_header(env)
    logger.main("unfrozen by %s" % _who(), message_id)
    sys.stdout.write("Message %s is no longer frozen\n" % message_id)
    return 0


def _remove(config, spool, logger, message_id, addresses):
    from exim_py.spool import MessageLocked
    try:
        lock = spool.lock(message_id)
    except MessageLocked:
        sys.stdout.write("Spool file for %s is locked (another process is handling this "
                         "message)\n" % message_id)
        return 1
    except Exception:
        lock = None
    existed = os.path.exists(spool.header_path(message_id))
    if not existed:
        sys.stdout.write("Spool data file for %s does not exist\n"
                         "Continuing, to ensure all files removed\n"
                         "Spool read error for %s-H: No such file or directory\n"
                         "Continuing to ensure all files removed\n" % (message_id, message_id))
    logger.main("removed by %s" % _who(), message_id)
    spool.remove(message_id)
    if lock is not None:
        lock.release()
    logger.main("Completed", message_id)
    if existed:
        sys.stdout.write("Message %s has been removed\n" % message_id)
        return 0
    sys.stdout.write("Message %s has been removed or did not exist\n" % message_id)
    return 1


def _modify(config, spool, logger, message_id, addresses, env, mark):
    from exim_py.envelope import Recipient
    qualify = config.main.get("qualify_recipient") or config.main.get("qualify_domain") \
        or config.main.get("primary_hostname")
    for a in addresses:
        address = a if "@" in a else "%s@%s" % (a, qualify)
        if mark:
            if not any(r.address == address for r in env.recipients):
                sys.stdout.write("Address %s not found in message %s\n" % (address, message_id))
                continue
            env.non_recipients.add(address)
            logger.main("address <%s> marked delivered by %s" % (address, _who()), message_id)
        else:
            env.recipients.append(Recipient(address))
            logger.main("recipient <%s> added by %s" % (address, _who()), message_id)
    spool.write_header(env)
    sys.stdout.write("Message %s has been modified\n" % message_id)
    return 0


@_with_envelope
def _add_recipients(config, spool, logger, message_id, addresses, env):
    return _modify(config, spool, logger, message_id, addresses, env, mark=False)


@_with_envelope
def _mark_delivered(config, spool, logger, message_id, addresses, env):
    return _modify(config, spool, logger, message_id, addresses, env, mark=True)


@_with_envelope
def _edit_sender(config, spool, logger, message_id, addresses, env):
    """-Mes ID ADDRESS: change the envelope sender."""
    if len(addresses) != 1:
        sys.stderr.write("exim_py: -Mes requires a message id and one address\n")
        return 1
    env.sender = addresses[0]
    spool.write_header(env)
    logger.main("sender address changed to <%s> by %s" % (addresses[0], _who()), message_id)
    sys.stdout.write("Message %s has been modified\n" % message_id)
    return 0


@_with_envelope
def _mark_all_delivered(config, spool, logger, message_id, addresses, env):
    """-Mmad ID: mark every recipient delivered."""
    for r in env.recipients:
        if r.address not in env.non_recipients:
            env.non_recipients.add(r.address)
            logger.main("address <%s> marked delivered by %s" % (r.address, _who()), message_id)
    spool.write_header(env)
    # Exim follows this message with an empty line.
    sys.stdout.write("Message %s has been modified\n\n" % message_id)
    return 0


@_with_envelope
def _give_up(config, spool, logger, message_id, addresses, env):
    """-Mg: fail every undelivered recipient, bouncing them, as Exim's cancel."""
    from exim_py.delivery import bounce
    from exim_py.delivery.address import Address, FAIL
    from exim_py.delivery.context import DeliveryContext, Message
    logger.main("cancelled by %s" % _who(), message_id)
    failed = []
    for r in env.recipients:
        if r.address in env.non_recipients:
            continue
        a = Address(r.address)
        a.set_result(FAIL, None)      # Exim gives no reason in the report
        failed.append(a)
    message = Message(message_id, env, spool.body_path(message_id))
    job = _CancelJob(config, spool, logger, message, env)
    job.ctx = DeliveryContext(config, spool=spool, logger=logger, message=message)
    if failed and env.sender:
        bounce.send_bounce(job, env.sender, failed)
    logger.main("Completed", message_id)
    spool.remove(message_id)
    return 0


class _CancelJob:
    """What bounce.send_bounce needs to know about the message being cancelled."""

    def __init__(self, config, spool, logger, message, envelope):
        self.config = config
        self.spool = spool
        self.logger = logger
        self.message = message
        self.envelope = envelope
        self.message_id = message.id


def _show(suffix):
    def show(config, spool, logger, message_id, addresses):
        if suffix == "msglog":
            path = spool.msglog_path(message_id)
        elif suffix == "-H":
            path = spool.header_path(message_id)
        else:
            path = spool.body_path(message_id)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            what = "msglog file" if suffix == "msglog" else "input file"
            name = message_id if suffix == "msglog" else message_id + suffix
            sys.stdout.write("Failed to open %s for %s: No such file or directory\n"
                             % (what, name))
            return 1
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    return show


ACTIONS = {
    "-Mf": _freeze,
    "-Mt": _thaw,
    "-Mrm": _remove,
    "-Mar": _add_recipients,
    "-Mmd": _mark_delivered,
    "-Mg": _give_up,
    "-Mes": _edit_sender,
    "-Mmad": _mark_all_delivered,
    "-Mvh": _show("-H"),
    "-Mvb": _show("-D"),
    "-Mvl": _show("msglog"),
}
