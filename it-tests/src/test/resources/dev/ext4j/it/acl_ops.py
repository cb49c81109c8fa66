"""POSIX ACLs: access decisions and inheritance, one line per check, "label -> OK" or "label -> ERRNO_NAME"
(or "label -> OK value"). AclIT runs it on a kernel ext4 mount and on an ext4j mount of copies of the same
image and requires identical output: the kernel is the oracle.

Usage: python3 -c "$(cat acl_ops.py)" setup USER | root | user UMASK | show

  setup  as root: a tree of files and directories with access ACLs naming USER (and its group) and
         directories with default ACLs
  root   as root: what root may do (root passes every check but exec, which needs an exec bit in the mode,
         and with an ACL the group bits of the mode are the mask)
  user   as USER with umask UMASK (octal): open for reading and writing, exec, readdir, create; then
         files and directories created in directories with and without default ACLs
  show   as root: mode, owner and getfacl output of every path, sorted
"""
import errno
import os
import subprocess
import sys


def attempt(label, fn):
    try:
        value = fn()
        result = "OK" if value is None else f"OK {value}"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    print(f"{label} -> {result}", flush=True)


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def setfacl(path, *args):
    subprocess.run(["setfacl", *args, path], check=True)


SCRIPT = b"#!/bin/sh\nexit 0\n"


def setup(user):
    """Each path with its mode (set before the ACL, whose mask then decides the group bits)."""
    def file(path, mode, *acl, owner=None, data=b"data\n"):
        write_file(path, data)
        if owner:
            subprocess.run(["chown", owner, path], check=True)
        os.chmod(path, mode)
        for a in acl:
            setfacl(path, "-m", a)

    def directory(path, mode, *acl):
        os.mkdir(path)
        os.chmod(path, mode)
        for a in acl:
            setfacl(path, "-m", a)
    file("deny", 0o644, f"u:{user}:---")
    directory("secret", 0o700, f"u:{user}:r-x")
    file("secret/file", 0o600, f"u:{user}:r--")
    directory("drop", 0o700, f"u:{user}:-wx")
    directory("traverse", 0o700, f"u:{user}:--x")
    file("traverse/file", 0o644)
    file("grp", 0o640, f"g:{user}:rw-")
    # a mask of --- (group bits 0): the kernel does not look at the ACL at all, and the mode's other bits decide
    file("grpdeny", 0o604, f"g:{user}:---")
    # a named group that matches without the permission denies, though other has it
    file("grpdeny-masked", 0o644, f"g:{user}:---")
    file("masked", 0o644, f"u:{user}:rwx", "m::r--")
    file("exec", 0o700, f"u:{user}:r-x", data=SCRIPT)
    file("noexec", 0o755, f"u:{user}:rw-", "m::rw-", data=SCRIPT)
    file("own", 0o660, "u::---", f"g:{user}:rw-", owner=f"{user}:{user}")
    file("nobodys", 0o640, "u:nobody:rw-")
    file("root-x-by-mask", 0o644, f"u:{user}:r-x", data=SCRIPT)
    file("root-no-x", 0o644, f"u:{user}:rw-", data=SCRIPT)
    directory("inherit", 0o755, f"u:{user}:rwx", f"d:u::rwx,d:u:{user}:rwx,d:g::r-x,d:g:{user}:r-x,d:m::rwx,d:o::r-x")
    directory("inherit-tight", 0o755, f"u:{user}:rwx", f"d:u::rw-,d:u:{user}:r--,d:g::---,d:m::r--,d:o::---")
    directory("plain", 0o777)
    print("setup done", flush=True)


def can_open(path, flags):
    return lambda: os.close(os.open(path, flags))


def run(path):
    def go():
        r = subprocess.run([f"./{path}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return f"exit {r.returncode}"
    return go


def create(path, mode=0o644):
    return lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))


def decisions(who):
    for f in ("deny", "secret/file", "traverse/file", "grp", "grpdeny", "grpdeny-masked", "masked", "exec", "noexec", "own", "nobodys",
              "root-x-by-mask", "root-no-x"):
        attempt(f"{who}: open {f} O_RDONLY", can_open(f, os.O_RDONLY))
        attempt(f"{who}: open {f} O_WRONLY", can_open(f, os.O_WRONLY))
        attempt(f"{who}: access {f} R_OK, W_OK, X_OK", lambda: [os.access(f, m) for m in (os.R_OK, os.W_OK, os.X_OK)])
    for f in ("exec", "noexec", "masked", "root-x-by-mask", "root-no-x"):
        attempt(f"{who}: run {f}", run(f))
    for d in ("secret", "drop", "traverse", "inherit", "plain"):
        attempt(f"{who}: readdir {d}", lambda: sorted(os.listdir(d)))
        attempt(f"{who}: create in {d}", create(f"{d}/{who}-made"))
        attempt(f"{who}: unlink what it made in {d}", lambda: os.unlink(f"{d}/{who}-made"))


def root():
    decisions("root")


def user(umask):
    os.umask(umask)
    who = f"user umask {umask:03o}"
    attempt(f"{who}: euid or egid 0", lambda: os.geteuid() == 0 or os.getegid() == 0)
    if umask == 0o022:
        decisions("user")
    tag = f"{umask:03o}"
    for d in ("inherit", "inherit-tight", "plain"):
        attempt(f"{who}: create {d}/f{tag} 0666", create(f"{d}/f{tag}", 0o666))
        attempt(f"{who}: create {d}/x{tag} 0755", create(f"{d}/x{tag}", 0o755))
        attempt(f"{who}: mkdir {d}/d{tag} 0777", lambda: os.mkdir(f"{d}/d{tag}", 0o777))
        attempt(f"{who}: create {d}/d{tag}/f 0666", create(f"{d}/d{tag}/f", 0o666))
        attempt(f"{who}: mkdir {d}/d{tag}/sub 0750", lambda: os.mkdir(f"{d}/d{tag}/sub", 0o750))
        attempt(f"{who}: mkfifo {d}/p{tag} 0666", lambda: os.mkfifo(f"{d}/p{tag}", 0o666))
        attempt(f"{who}: read back {d}/f{tag}", can_open(f"{d}/f{tag}", os.O_RDWR))


def show():
    paths = []
    for top, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d != "lost+found")
        paths += [os.path.join(top, n)[2:] for n in sorted(dirs + files)]
    for p in sorted(paths):
        st = os.lstat(p)
        acl = subprocess.run(["getfacl", "-p", "-n", "--", p], capture_output=True, text=True)
        text = (acl.stdout + acl.stderr).strip().replace("\n", " | ")
        print(f"{p}: {oct(st.st_mode)} {st.st_uid}:{st.st_gid} -> {text}", flush=True)


if __name__ == "__main__":
    part = sys.argv[1]
    if part == "setup":
        setup(sys.argv[2])
    elif part == "root":
        root()
    elif part == "user":
        user(int(sys.argv[2], 8))
    else:
        show()
