package dev.ext4j.fs;

import dev.ext4j.io.Lru;
import java.util.Arrays;

/**
 * Name to inode cache (the VFS dcache): (directory inode, name) to child inode, so that a path is
 * resolved with one hash lookup per component instead of directory scans.
 */
final class DentryCache {

    private record Key(long dir, byte[] name) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Key k && k.dir == dir && Arrays.equals(k.name, name);
        }

        @Override
        public int hashCode() {
            return Long.hashCode(dir) * 31 + Arrays.hashCode(name);
        }
    }

    private final Lru<Key, Long> entries;

    DentryCache(int capacity) {
        entries = new Lru<>(capacity);
    }

    /** The cached child inode, or 0. */
    long get(long dir, byte[] name) {
        Long ino = entries.get(new Key(dir, name));
        return ino == null ? 0 : ino;
    }

    void put(long dir, byte[] name, long ino) {
        entries.put(new Key(dir, name.clone()), ino);
    }

    void remove(long dir, byte[] name) {
        entries.remove(new Key(dir, name));
    }
}
