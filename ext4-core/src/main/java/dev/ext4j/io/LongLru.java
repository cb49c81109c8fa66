package dev.ext4j.io;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A bounded map from long keys (block or inode numbers) to values, evicting the least recently used.
 * Segmented: each segment has its own short lock, so threads working on different keys rarely meet.
 */
public final class LongLru<V> {
    private static final int SEGMENTS = 16;

    private final Segment<V>[] segments;

    @SuppressWarnings("unchecked")
    public LongLru(long capacity) {
        int perSegment = (int) Math.max(4, Math.min(Integer.MAX_VALUE, capacity / SEGMENTS));
        segments = new Segment[SEGMENTS];
        for (int i = 0; i < SEGMENTS; i++) {
            segments[i] = new Segment<>(perSegment);
        }
    }

    private Segment<V> segment(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        return segments[(int) ((h ^ (h >>> 29)) & (SEGMENTS - 1))];
    }

    public V get(long key) {
        Segment<V> s = segment(key);
        s.lock.lock();
        try {
            return s.map.get(key);
        } finally {
            s.lock.unlock();
        }
    }

    public void put(long key, V value) {
        Segment<V> s = segment(key);
        s.lock.lock();
        try {
            s.map.put(key, value);
        } finally {
            s.lock.unlock();
        }
    }

    public void remove(long key) {
        Segment<V> s = segment(key);
        s.lock.lock();
        try {
            s.map.remove(key);
        } finally {
            s.lock.unlock();
        }
    }

    private static final class Segment<V> {
        final ReentrantLock lock = new ReentrantLock();
        final LinkedHashMap<Long, V> map;

        Segment(int capacity) {
            map = new LinkedHashMap<>(64, 0.75f, true) {
                @Override
                protected boolean removeEldestEntry(Map.Entry<Long, V> eldest) {
                    return size() > capacity;
                }
            };
        }
    }
}
