"""A real SMTP server for GoMon's tests (aiosmtpd, Debian's python3-aiosmtpd): STARTTLS required, AUTH (PLAIN,
LOGIN) required and only over TLS. Each message accepted is written to OUT as NNNNNN.eml (the message as received)
and NNNNNN.json (envelope sender and recipients, whether the session was TLS, the authenticated user).
Arguments: HOST PORT CERT KEY USER PASSWORD OUT. Prints "ready" once it listens; stops on SIGTERM."""
import json
import os
import signal
import ssl
import sys
import logging
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd itself sets the deprecated Session.login_data on each login, and logs a warning each time.
logging.getLogger("mail.log").setLevel(logging.ERROR)

host, port, cert, key, user, password, out = sys.argv[1:8]
lock = threading.Lock()
count = [0]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            count[0] += 1
            base = os.path.join(out, "%06d" % count[0])
        login = getattr(session.auth_data, "login", None)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "user": login.decode() if isinstance(login, bytes) else login,
        }
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    if (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    ):
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname=host,
    port=int(port),
    tls_context=context,
    require_starttls=True,
    auth_required=True,
    auth_require_tls=True,
    authenticator=authenticator,
)
controller.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
controller.stop()
