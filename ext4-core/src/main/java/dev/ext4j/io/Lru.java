package dev.ext4j.io;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A bounded map that evicts the least recently used entry: blocks, inodes and dentries are cached in
 * one. Segmented: each segment has its own short lock, so threads working on different keys rarely
 * meet.
 */
public final class Lru<K, V> {
    private static final int SEGMENTS = 16;

    private final Segment<K, V>[] segments;

    @SuppressWarnings("unchecked")
    public Lru(long capacity) {
        int perSegment = (int) Math.max(4, Math.min(Integer.MAX_VALUE, capacity / SEGMENTS));
        segments = new Segment[SEGMENTS];
        for (int i = 0; i < SEGMENTS; i++) {
            segments[i] = new Segment<>(perSegment);
        }
    }

    private Segment<K, V> segment(K key) {
        long h = key.hashCode() * 0x9E3779B97F4A7C15L;
        return segments[(int) ((h ^ (h >>> 29)) & (SEGMENTS - 1))];
    }

    public V get(K key) {
        Segment<K, V> s = segment(key);
        s.lock.lock();
        try {
            return s.map.get(key);
        } finally {
            s.lock.unlock();
        }
    }

    public void put(K key, V value) {
        Segment<K, V> s = segment(key);
        s.lock.lock();
        try {
            s.map.put(key, value);
        } finally {
            s.lock.unlock();
        }
    }

    public void remove(K key) {
        Segment<K, V> s = segment(key);
        s.lock.lock();
        try {
            s.map.remove(key);
        } finally {
            s.lock.unlock();
        }
    }

    private static final class Segment<K, V> {
        final ReentrantLock lock = new ReentrantLock();
        final LinkedHashMap<K, V> map;

        Segment(int capacity) {
            map = new LinkedHashMap<>(64, 0.75f, true) {
                @Override
                protected boolean removeEldestEntry(Map.Entry<K, V> eldest) {
                    return size() > capacity;
                }
            };
        }
    }
}
