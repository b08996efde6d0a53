"""The system filter (spec chapter "System-wide message filtering").

``system_filter`` names an Exim filter that is run once at the start of
every delivery attempt, before any routing.  It may add and remove header
lines (the change is immediate and is kept with the message), set up
deliveries of its own (with ``system_filter_file_transport``,
``system_filter_pipe_transport`` and ``system_filter_reply_transport`` for
files, pipes and replies), and fail, defer or freeze the original
recipients.  When it sets up a significant delivery the original
recipients are not delivered at all.  Its $n0..$n9 become $sn0..$sn9 in
users' filters.

The delivery engine calls ``addresses_to_route(delivery, plan)`` in place
of routing ``plan.top`` as it stands.
"""

from exim_py.delivery.address import Address, FAIL
from exim_py.filter.interpreter import (DEFER, DELIVERED, ERROR, FREEZE,
                                        FAIL as FILTER_FAIL, Interpreter, body_for_variables)

# The parent the log shows for what the system filter set up: "<system-filter>".
PARENT_NAME = "system-filter"


def addresses_to_route(delivery, plan):
    """Run the system filter for this delivery attempt; returns the
    addresses to route (the originals, what the filter set up, or both)."""
    main = delivery.config.main
    path = main.get("system_filter")
    if not path:
        return list(plan.top)
    log = delivery.log
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    except OSError as e:
        delivery.logger.panic("Failed to open system filter file %s: %s" % (path, e.strerror),
                              delivery.message_id)
        return []
    ctx = delivery.ctx
    message = delivery.message
    ectx = ctx.expand_context()
    # Forced delivery (-M) and -Mt count as manual thaws (spec: manually_thawed).
    thawed = bool(delivery.thaw or delivery.envelope.manual_thaw)
    ectx.body = body_for_variables(message, ectx.main_option("message_body_visible", 500))
    result = Interpreter(ectx, system=True, allowed=("defer", "fail", "freeze"),
                         real_log=True, message_id=message.id,
                         manually_thawed=thawed,
                         first_delivery=ctx.first_delivery,
                         qualify=main.get("qualify_recipient") or main.get("qualify_domain")
                         or main.get("primary_hostname")).run(text)
    if result.code == ERROR:
        delivery.logger.panic("Error in system filter: %s" % result.message, delivery.message_id)
        return []
    message.filter_numbers = result.numbers
    parent = Address(PARENT_NAME)
    generated = [_child(delivery, parent, item) for item in result.generated]
    originals = [a for a in plan.top]
    if result.code == FILTER_FAIL:
        logged, bounced = _fail_texts(result.message or "")
        log.main("cancelled by system filter: %s" % logged)
        for a in originals:
            a.set_result(FAIL, bounced or None, user_message=bounced or None)
            plan.events.append(a)
        return generated
    if result.code == FREEZE and not thawed:
        # Ignored once an administrator has thawed the message (spec).
        envelope = delivery.envelope
        envelope.frozen = True
        envelope.spool_extra["frozen"] = int(ctx.now())
        log.main("Frozen by the system filter: %s" % result.message)
        return generated
    if result.code == DEFER:
        log.main("Delivery deferred by system filter")
        return generated
    if result.code == DELIVERED:
        log.main("original recipients ignored (system filter)")
        # The first original stays pending until what the filter set up is
        # done, so that a deferred delivery keeps the message on the queue.
        for i, a in enumerate(originals):
            a.state = "rerouted" if i == 0 and generated else "discarded"
        if originals and generated:
            originals[0].child_list = list(generated)
        return generated
    return generated + originals


def _fail_texts(text):
    """A fail text "<<for the log>>for the bounce" is split in two (spec)."""
    if text.startswith("<<") and ">>" in text:
        logged, _, bounced = text[2:].partition(">>")
        return logged, bounced
    return text, text


def _child(delivery, parent, item):
    """An Address for one delivery the system filter set up."""
    main = delivery.config.main
    if item.kind == "address":
        child = Address(item.text, parent=parent, errors_to=item.errors_to)
        child.ignore_error = item.noerror
        return child
    child = Address(item.text, parent=parent)
    child.local_part = child.cc_local_part = item.text
    child.ignore_error = item.noerror
    child.is_pipe = item.kind == "pipe"
    child.is_reply = item.kind == "reply"
    child.is_file = item.kind == "file"
    child.directory = child.is_file and item.text.endswith("/")
    child.router = None
    if item.kind == "file":
        option = "system_filter_directory_transport" if child.directory else \
            "system_filter_file_transport"
    elif item.kind == "pipe":
        option = "system_filter_pipe_transport"
    else:
        option = "system_filter_reply_transport"
    name = main.get(option)
    child.setup_error = None
    if not name:
        child.setup_error = "%s unset in system filter" % option
        return child
    try:
        child.transport = delivery.ctx.transport(delivery.ctx.expand(name, child).strip())
        from exim_py.filter.transports import prepare
        prepare(child, item)
    except KeyError:
        child.setup_error = "%s transport %s not found in system filter" % (option, name)
    except Exception as e:
        child.setup_error = "failed to expand %s in system filter: %s" % (option, e)
    return child
