package dev.ext4j.pagecache;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * The pages of one file by index, in the shape of the kernel's xarray: slots of 512 pages, found
 * by their first index in an ordered map, so a lookup is one map probe and an array read, and
 * walking in order costs nothing extra. A slot goes when its last page does.
 */
final class PageTable<P> {
    private static final int SHIFT = 9;
    private static final int SIZE = 1 << SHIFT;

    private static final class Slot<P> {
        final AtomicReferenceArray<P> pages = new AtomicReferenceArray<>(SIZE);
        final AtomicInteger count = new AtomicInteger();
        /** A bit per page that may be dirty ({@link #tagDirty}). */
        final AtomicLongArray dirty = new AtomicLongArray(SIZE / 64);
    }

    private final ConcurrentSkipListMap<Long, Slot<P>> slots = new ConcurrentSkipListMap<>();
    private final AtomicInteger size = new AtomicInteger();

    P get(long index) {
        Slot<P> s = slots.get(index >>> SHIFT);
        return s == null ? null : s.pages.get((int) (index & (SIZE - 1)));
    }

    /** Puts {@code p} at {@code index} unless a page is there; returns the page that was there, or null. */
    P putIfAbsent(long index, P p) {
        while (true) {
            Slot<P> s = slots.get(index >>> SHIFT);
            if (s == null) {
                Slot<P> fresh = new Slot<>();
                s = slots.putIfAbsent(index >>> SHIFT, fresh);
                if (s == null) {
                    s = fresh;
                }
            }
            P had = s.pages.compareAndExchange((int) (index & (SIZE - 1)), null, p);
            if (had != null) {
                return had;
            }
            s.count.incrementAndGet();
            if (slots.get(index >>> SHIFT) == s) {
                size.incrementAndGet();
                return null;
            }
            // the slot was dropped as empty meanwhile: take the page back out and retry
            if (s.pages.compareAndSet((int) (index & (SIZE - 1)), p, null)) {
                s.count.decrementAndGet();
            }
        }
    }

    /** Removes {@code p} from {@code index} if it is still there. */
    boolean remove(long index, P p) {
        Slot<P> s = slots.get(index >>> SHIFT);
        if (s == null || !s.pages.compareAndSet((int) (index & (SIZE - 1)), p, null)) {
            return false;
        }
        size.decrementAndGet();
        if (s.count.decrementAndGet() == 0) {
            slots.remove(index >>> SHIFT, s);
        }
        return true;
    }

    boolean isEmpty() {
        return size.get() == 0;
    }

    /** The first index at or after {@code index} that holds a page, or -1. */
    long nextIndex(long index) {
        for (Map.Entry<Long, Slot<P>> e : slots.tailMap(index >>> SHIFT).entrySet()) {
            long base = e.getKey() << SHIFT;
            for (int i = (int) Math.max(0, index - base); i < SIZE; i++) {
                if (e.getValue().pages.get(i) != null) {
                    return base + i;
                }
            }
        }
        return -1;
    }

    /**
     * Tags the page at {@code index} dirty or clean (the kernel's PAGECACHE_TAG_DIRTY), for
     * {@link #dirtyFrom}. The caller holds the page's monitor, so the tag follows its dirty state
     * in the order it changes.
     */
    void tagDirty(long index, boolean dirty) {
        Slot<P> s = slots.get(index >>> SHIFT);
        if (s == null) {
            return; // the page is gone, and its tag with its slot
        }
        int i = (int) (index & (SIZE - 1));
        long bit = 1L << (i & 63);
        s.dirty.accumulateAndGet(i >>> 6, bit, dirty ? (w, b) -> w | b : (w, b) -> w & ~b);
    }

    /**
     * The pages tagged dirty from {@code index} on, in order, each read as the walk reaches it (a
     * page tagged or put meanwhile may be seen or not): a writeback walks its dirty pages only,
     * however many clean ones a file has cached, and stops when it has taken enough.
     */
    Iterable<P> dirtyFrom(long index) {
        return () -> new Iterator<P>() {
            private final Iterator<Map.Entry<Long, Slot<P>>> rest = slots.tailMap(index >>> SHIFT).entrySet().iterator();
            private Slot<P> slot;
            private long base;
            private int word = SIZE / 64;
            private long bits;
            private P next;

            @Override
            public boolean hasNext() {
                while (next == null) {
                    if (bits != 0) {
                        int i = word * 64 + Long.numberOfTrailingZeros(bits);
                        bits &= bits - 1;
                        if (base + i >= index) {
                            next = slot.pages.get(i);
                        }
                    } else if (slot != null && ++word < SIZE / 64) {
                        bits = slot.dirty.get(word);
                    } else if (rest.hasNext()) {
                        Map.Entry<Long, Slot<P>> e = rest.next();
                        slot = e.getValue();
                        base = e.getKey() << SHIFT;
                        word = -1;
                    } else {
                        return false;
                    }
                }
                return true;
            }

            @Override
            public P next() {
                if (!hasNext()) {
                    throw new NoSuchElementException();
                }
                P p = next;
                next = null;
                return p;
            }
        };
    }

    /** The pages with index in [from, to), in order: a snapshot. */
    List<P> range(long from, long to) {
        List<P> out = new ArrayList<>();
        for (Map.Entry<Long, Slot<P>> e : slots.tailMap(from >>> SHIFT).entrySet()) {
            long base = e.getKey() << SHIFT;
            if (base >= to) {
                break;
            }
            Slot<P> s = e.getValue();
            int left = s.count.get(); // a slot is mostly sparse (a small file has one page): stop at its last page
            for (int i = (int) Math.max(0, from - base), hi = (int) Math.min(SIZE, to - base); i < hi && left > 0; i++) {
                P p = s.pages.get(i);
                if (p != null) {
                    out.add(p);
                    left--;
                }
            }
        }
        return out;
    }
}
