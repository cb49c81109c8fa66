package dev.ext4j.fs;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Name to inode cache (the VFS dcache): (directory inode, name) to child inode, so that a path is
 * resolved with one hash lookup per component instead of directory scans. Bounded, LRU, segmented.
 */
final class DentryCache {
    private static final int SEGMENTS = 16;

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

    private final ReentrantLock[] locks = new ReentrantLock[SEGMENTS];
    private final LinkedHashMap<Key, Long>[] maps;

    @SuppressWarnings("unchecked")
    DentryCache(int capacity) {
        int per = Math.max(16, capacity / SEGMENTS);
        maps = new LinkedHashMap[SEGMENTS];
        for (int i = 0; i < SEGMENTS; i++) {
            locks[i] = new ReentrantLock();
            maps[i] = new LinkedHashMap<>(64, 0.75f, true) {
                @Override
                protected boolean removeEldestEntry(Map.Entry<Key, Long> eldest) {
                    return size() > per;
                }
            };
        }
    }

    private int segment(Key k) {
        int h = k.hashCode();
        return (h ^ (h >>> 16)) & (SEGMENTS - 1);
    }

    /** The cached child inode, or 0. */
    long get(long dir, byte[] name) {
        Key k = new Key(dir, name);
        int s = segment(k);
        locks[s].lock();
        try {
            Long v = maps[s].get(k);
            return v == null ? 0 : v;
        } finally {
            locks[s].unlock();
        }
    }

    void put(long dir, byte[] name, long ino) {
        Key k = new Key(dir, name.clone());
        int s = segment(k);
        locks[s].lock();
        try {
            maps[s].put(k, ino);
        } finally {
            locks[s].unlock();
        }
    }

    void remove(long dir, byte[] name) {
        Key k = new Key(dir, name);
        int s = segment(k);
        locks[s].lock();
        try {
            maps[s].remove(k);
        } finally {
            locks[s].unlock();
        }
    }
}
