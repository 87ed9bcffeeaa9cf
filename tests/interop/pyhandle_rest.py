"""pyhandle's REST client against a Suyuan node, as a user of it would write it.

Usage: pyhandle_rest.py https://127.0.0.1:PORT PREFIX SECRET
Creates, reads, modifies and deletes handles over HTTPS with a secret key (Basic
authentication as 301:PREFIX/ADMIN); exits non-zero, naming the step, on any difference.
"""
import sys
import warnings

from pyhandle.handleclient import PyHandleClient
from pyhandle.handleexceptions import HandleAlreadyExistsException, HandleNotFoundException

warnings.filterwarnings("ignore")  # the node's certificate is self-signed


def check(step, got, want):
    if got != want:
        print(f"FAIL {step}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   {step}")


def main():
    url, prefix, secret = sys.argv[1:4]
    client = PyHandleClient("rest").instantiate_with_username_and_password(
        url, f"301:{prefix}/ADMIN", secret, HTTPS_verify=False
    )
    handle = f"{prefix}/pyh-meter-1"

    created = client.register_handle(handle, "https://example.org/meter-1", checksum="abc123")
    check("register_handle returns the handle", created, handle)
    try:
        client.register_handle(handle, "https://example.org/other")
        check("registering twice is refused", "accepted", "HandleAlreadyExistsException")
    except HandleAlreadyExistsException:
        print("ok   registering twice is refused")

    check("URL after create", client.get_value_from_handle(handle, "URL"), "https://example.org/meter-1")
    check("CHECKSUM after create", client.get_value_from_handle(handle, "CHECKSUM"), "abc123")
    record = client.retrieve_handle_record(handle)
    check("record holds URL and CHECKSUM", (record["URL"], record["CHECKSUM"]), ("https://example.org/meter-1", "abc123"))

    client.modify_handle_value(handle, URL="https://example.org/meter-1-moved", UNIT="t")
    check("URL after modify", client.get_value_from_handle(handle, "URL"), "https://example.org/meter-1-moved")
    check("UNIT added by modify", client.get_value_from_handle(handle, "UNIT"), "t")

    client.delete_handle_value(handle, "CHECKSUM")
    check("CHECKSUM after delete_handle_value", client.get_value_from_handle(handle, "CHECKSUM"), None)

    client.delete_handle(handle)
    check("record after delete_handle", client.retrieve_handle_record(handle), None)
    try:
        client.delete_handle(handle)
        check("deleting a missing handle is refused", "accepted", "HandleNotFoundException")
    except HandleNotFoundException:
        print("ok   deleting a missing handle is refused")

    bad = PyHandleClient("rest").instantiate_with_username_and_password(
        url, f"301:{prefix}/ADMIN", secret + "-wrong", HTTPS_verify=False
    )
    try:
        bad.register_handle(f"{prefix}/pyh-wrong", "https://example.org/x")
        check("a wrong secret is refused", "accepted", "an exception")
    except Exception as e:  # pyhandle raises HandleAuthenticationError
        check("a wrong secret is refused", type(e).__name__, "HandleAuthenticationError")
    check("nothing written with the wrong secret", client.retrieve_handle_record(f"{prefix}/pyh-wrong"), None)
    print("pyhandle: all steps passed")


if __name__ == "__main__":
    main()
