# Shared writable mmap on the mount: write through a mapping, msync, read back with read(2).
# Prints "sha256=..." of the file's final content. Run with the mount point as the working directory.
import hashlib
import mmap
import os

SIZE = 3 * 1024 * 1024 + 1234
fd = os.open("mapped", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, SIZE)
m = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(0, SIZE, 4096):
    chunk = bytes([(i // 4096 + k) % 251 for k in range(min(4096, SIZE - i))])
    m[i:i + len(chunk)] = chunk
m.flush()
m[100:105] = b"HELLO"          # a change after msync, written back by munmap/close
m.close()
os.fsync(fd)
os.close(fd)
fd = os.open("mapped", os.O_RDONLY)
data = b""
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    data += b
os.close(fd)
assert len(data) == SIZE, len(data)
assert data[100:105] == b"HELLO", data[96:110]
assert data[4096:4100] == bytes([1, 2, 3, 4]), data[4096:4100]
print("sha256=" + hashlib.sha256(data).hexdigest())
