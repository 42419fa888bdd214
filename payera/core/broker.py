"""Make the Celery worker survive a Redis broker restart.

kombu's Redis transport (5.7.0, still upstream: celery/kombu#970 and its relatives) crashes the
whole worker ("Unrecoverable error: AttributeError: 'NoneType' object has no attribute
'hostname'") when the broker connection drops while tasks are unacknowledged (we ack late): on
the way down it tries to push those messages back to the queue over the connection it has just
released. Seen and reproduced by tests/scenarios/test_broker_outage.py.

After a reconnect, acking such a message through the dead channel crashes it the same way.
The fix here is narrow: if that restore (or ack/reject) cannot reach the broker, log it and
carry on. The
messages stay in Redis's `unacked` hash, and kombu's own `restore_visible` puts them back on the
queue after the visibility timeout (CELERY_BROKER_TRANSPORT_OPTIONS); meanwhile our sweeps redo
the work from the database, which is the source of truth (every task is idempotent). The worker
keeps running and reconnects instead of exiting.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("payera.broker")


def harden_redis_transport() -> None:
    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # the redis client is not installed: no Redis transport to harden
        return
    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, "_payera_hardened", False):
        return
    gone = (AttributeError, OSError, kombu_redis.redis.exceptions.ConnectionError)
    restore, ack, reject = qos.restore_unacked, qos.ack, qos.reject

    def restore_unacked(self, client=None):
        try:
            return restore(self, client)
        except gone as exc:
            logger.warning("broker gone while restoring %d unacknowledged message(s) (%s): they stay in Redis "
                           "and are restored after the visibility timeout; the sweeps redo the work meanwhile",
                           len(self._delivered), type(exc).__name__)
            self._delivered.clear()
            return None

    def ack_(self, delivery_tag):
        try:
            return ack(self, delivery_tag)
        except gone as exc:  # acked on the connection that died: redelivered later, our tasks are idempotent
            logger.warning("could not ack message %s on a lost broker connection (%s): it will be redelivered",
                           delivery_tag, type(exc).__name__)
            self._delivered.pop(delivery_tag, None)
            return None

    def reject_(self, delivery_tag, requeue=False):
        try:
            return reject(self, delivery_tag, requeue=requeue)
        except gone as exc:
            logger.warning("could not reject message %s on a lost broker connection (%s): it will be redelivered",
                           delivery_tag, type(exc).__name__)
            self._delivered.pop(delivery_tag, None)
            return None

    for fn in (restore_unacked, ack_, reject_):
        fn._payera_hardened = True  # type: ignore[attr-defined]
    qos.restore_unacked, qos.ack, qos.reject = restore_unacked, ack_, reject_
