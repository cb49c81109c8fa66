package dev.ext4j.pagecache;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The dirty tags of {@link PageTable}: a writeback walks the tagged pages only, in order. */
class PageTableTest {
    private static List<String> walk(PageTable<String> t, long from) {
        List<String> out = new ArrayList<>();
        t.dirtyFrom(from).forEach(out::add);
        return out;
    }

    @Test
    void theWalkMeetsTaggedPagesOnlyInOrderAcrossSlotsAndWords() {
        PageTable<String> t = new PageTable<>();
        long[] at = {0, 1, 63, 64, 511, 512, 1000, 5_000_000};
        for (long i : at) {
            t.putIfAbsent(i, "p" + i);
        }
        for (long i = 2; i < 60; i++) {
            t.putIfAbsent(i, "clean" + i); // never tagged
        }
        for (long i : at) {
            t.tagDirty(i, true);
        }
        assertEquals(List.of("p0", "p1", "p63", "p64", "p511", "p512", "p1000", "p5000000"), walk(t, 0));
        assertEquals(List.of("p64", "p511", "p512", "p1000", "p5000000"), walk(t, 64));
        assertEquals(List.of("p5000000"), walk(t, 1001));

        t.tagDirty(63, false);
        t.tagDirty(512, false);
        assertEquals(List.of("p0", "p1", "p64", "p511", "p1000", "p5000000"), walk(t, 0));
    }

    @Test
    void aRemovedPageIsNotMetAndItsSlotsTagsGoWithIt() {
        PageTable<String> t = new PageTable<>();
        t.putIfAbsent(700, "a");
        t.tagDirty(700, true);
        t.remove(700, "a"); // the last page of its slot: the slot goes
        t.tagDirty(700, false); // no slot: nothing to do
        t.putIfAbsent(701, "b");
        assertEquals(List.of(), walk(t, 0), "a new slot starts with no tags");
        t.putIfAbsent(3, "c");
        t.tagDirty(3, true);
        t.putIfAbsent(4, "d");
        t.tagDirty(4, true);
        t.remove(3, "c"); // tag left behind with a live slot: the walk finds no page there
        assertEquals(List.of("d"), walk(t, 0));
    }
}
