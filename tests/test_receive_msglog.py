"""The two records of an arrival: the main log's <= line and the first line
of the message's own log (spool/msglog/<id>), which Exim writes from the
same fields."""

import os
import re

from twisted.trial import unittest

from tests.support.end_to_end import Site, TIMESTAMP, read_text, send_message, wait_for


class ArrivalRecordTests(unittest.TestCase):

    def test_msglog_received_line_matches_mainlog(self):
        """A message taken over SMTP by the daemon: its msglog starts with
        "<time> Received from" and exactly the fields of its <= line."""
        site = Site(self)
        site.macros.append("-DE2E_QUEUE_ONLY=yes")
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "sender@example.org", ["bob@test.example"],
                                  "Subject: records\n\nhello\n")
        wait_for(lambda: "%s <= " % message_id in site.mainlog(), "the <= line")
        fields = re.search(r"%s <= (.*)" % message_id, site.mainlog()).group(1)
        self.assertIn("H=(client.example) [127.0.0.1]", fields)
        msglog = read_text(os.path.join(site.dir, "spool", "msglog", message_id))
        first = msglog.splitlines()[0]
        self.assertRegex(first, "^" + TIMESTAMP.pattern + " Received from ")
        self.assertEqual(first.split(" Received from ", 1)[1], fields)
