#!/usr/bin/env python3
"""A tiny auth_http hook, as a site might write one, for popbridge's tests.

It listens on 127.0.0.1 on a free port, prints the port, and answers every
GET as nginx's mail auth_http protocol asks: Auth-User and Auth-Pass arrive
%-escaped (only %XX, '+' is a plus), non-ASCII bytes as they are. The first
argument is the shared secret the X-Auth-Key header must carry.
"""
import http.server
import sys
import urllib.parse

SECRET = sys.argv[1]
USERS = {"alice": "pw", "j\u00fcrgen@example.org": "p\u00e4 ss+%"}


def decoded(headers, name):
    # http.server decodes header bytes as ISO-8859-1: undo that, then
    # undo the %-escaping, then read UTF-8.
    raw = headers.get(name, "").encode("latin-1")
    return urllib.parse.unquote_to_bytes(raw).decode("utf-8")


class Hook(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        h = self.headers
        user = decoded(h, "Auth-User")
        self.send_response(200)
        if (h.get("X-Auth-Key") != SECRET or h.get("Auth-Protocol") != "pop3"
                or h.get("Auth-Method") != "plain" or h.get("Client-IP") != "192.0.2.7"):
            self.send_header("Auth-Status", "Hook refused the request")
        elif USERS.get(user) == decoded(h, "Auth-Pass"):
            self.send_header("Auth-Status", "OK")
            self.send_header("Auth-Server", "127.0.0.1")
            self.send_header("Auth-Port", "1143")
            self.send_header("Auth-User", "master")
            self.send_header("Auth-Pass", "master-secret")
            self.send_header("X-Popbridge-Mailbox", urllib.parse.quote("Users/" + user))
            self.send_header("X-Popbridge-Device", "desk")
        else:
            self.send_header("Auth-Status", "Invalid login or password")
            self.send_header("Auth-Wait", "1")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
