# Metadata-heavy writer for JournalCrashIT, run in the mount: copies of a tree (cp -a), files
# created and fsynced, renames and deletes, until it is killed. Prints "synced PATH SHA256" after
# an fsync returned, and "touch PATH" before any later change to PATH (rename away, delete).
import hashlib, os, random, shutil, sys

seed = int(sys.argv[1])
rnd = random.Random(seed)
root = "r%d" % seed
os.makedirs(root, exist_ok=True)
dirs = [root]
mine = []  # files this run may rename or delete


def log(*a):
    print(*a, flush=True)


i = 0
while True:
    i += 1
    k = rnd.randrange(12)
    if k == 0:
        dst = "%s/tree%d" % (root, i)
        shutil.copytree("/usr/include/linux", dst, symlinks=True, copy_function=shutil.copy2)
        log("tree", dst)
    elif k == 1:
        d = "%s/d%d" % (root, i)
        os.mkdir(d)
        dirs.append(d)
    elif k <= 6:
        p = "%s/f%d" % (rnd.choice(dirs), i)
        data = ("%d-%d-" % (seed, i)).encode() * rnd.randrange(1, 3000)
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        log("synced", p, hashlib.sha256(data).hexdigest())
        mine.append(p)
    elif k <= 8 and mine:
        p = mine.pop(rnd.randrange(len(mine)))
        q = "%s/g%d" % (rnd.choice(dirs), i)
        log("touch", p)
        os.rename(p, q)
    elif mine:
        p = mine.pop(rnd.randrange(len(mine)))
        log("touch", p)
        os.unlink(p)
