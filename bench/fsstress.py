# fsstress.py MOUNTPOINT SEED SECONDS: one process of bench/fsstress (see there).
import os, random, sys, errno, time
root, seed, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rnd = random.Random(seed)
names = ['a','b','c','d','e','f','g','h','long'+'x'*200, 'n'*255]
dirs = ['', 'd1', 'd2', 'd1/s', 'd2/t', 'd1/s/u']
ok = 0; errs = {}
OPS = [int(x) for x in os.environ.get("OPS", "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14").split()]
held = []
def p():
    return os.path.join(root, rnd.choice(dirs), rnd.choice(names) + str(rnd.randint(0, 30)))
end = time.time() + secs
while time.time() < end:
    op = rnd.choice(OPS)
    try:
        if op == 0:
            with open(p(), 'ab') as f: f.write(os.urandom(rnd.choice([10, 100, 3000, 5000, 70000])))
        elif op == 1:
            fd = os.open(p(), os.O_WRONLY | os.O_CREAT, 0o644)
            try: os.pwrite(fd, b'z' * rnd.randint(1, 20000), rnd.randint(0, 1 << 20))
            finally: os.close(fd)
        elif op == 2: os.unlink(p())
        elif op == 3: os.rename(p(), p())
        elif op == 4: os.mkdir(os.path.join(root, rnd.choice(dirs), 'm' + str(rnd.randint(0, 5))))
        elif op == 5: os.rmdir(os.path.join(root, rnd.choice(dirs), 'm' + str(rnd.randint(0, 5))))
        elif op == 6: os.truncate(p(), rnd.randint(0, 200000))
        elif op == 7: os.setxattr(p(), 'user.k' + str(rnd.randint(0, 9)), os.urandom(rnd.randint(1, 600)))
        elif op == 8: os.symlink('t' * rnd.choice([5, 59, 60, 61, 300, 2000]), p())
        elif op == 9: os.link(p(), p())
        elif op == 10:
            fd = os.open(p(), os.O_WRONLY | os.O_CREAT, 0o644)
            try: os.posix_fallocate(fd, rnd.randint(0, 100000), rnd.randint(1, 300000))
            finally: os.close(fd)
        elif op == 11:
            for e in os.listdir(os.path.join(root, rnd.choice(dirs))): pass
        elif op == 12:
            with open(p(), 'rb') as f: f.read()
        elif op == 13: os.removexattr(p(), 'user.k' + str(rnd.randint(0, 9)))
        elif op == 14:
            # keep up to 64 files open, written to, while other ops unlink them: open orphans
            fd = os.open(p(), os.O_WRONLY | os.O_CREAT, 0o644)
            held.append(fd)
            if len(held) > 64: os.close(held.pop(0))
            os.pwrite(fd, b'h' * rnd.randint(1, 8000), rnd.randint(0, 1 << 16))
        ok += 1
    except OSError as e:
        errs[errno.errorcode.get(e.errno, e.errno)] = errs.get(errno.errorcode.get(e.errno, e.errno), 0) + 1
print(seed, 'ok', ok, 'errors', errs)
