package dev.ext4j.blockmap;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.ExtentTree.Level;
import dev.ext4j.format.Extent;

/**
 * ext4_ext_shift_extents() for collapse and insert range, on a writable {@link ExtentTree}: every
 * extent at or after logical block {@code from} moves by {@code delta} blocks (left for collapse
 * range, right for insert range), a leaf at a time: left shifts go left to right, right shifts
 * right to left, and each leaf's index keys follow at once, so the tree is valid between two
 * leaves and the {@link StepCredits} may restart the handle there. A right shift first splits the
 * extent that holds {@code from}; a left shift needs {@code from + delta .. from - 1} unmapped and
 * merges the first moved extent with its left neighbour when they touch on disk too. A root left
 * with one child that fits in the inode takes its entries.
 *
 * <p>Errors: EINVAL when the left shift would overlap a mapped block or go below block 0, or the
 * right shift past the last logical block; ENOSPC when the split needs a tree block (nothing moved
 * then). Not thread-safe, like the tree: the caller holds the inode's block-map lock.
 */
public final class ExtentShift {
    /** What a step of a shift asks for before it changes up to {@code blocks} tree blocks. */
    @FunctionalInterface
    public interface StepCredits {
        void before(int blocks) throws Ext4Exception;
    }

    private static final long MAX_BLOCKS = ExtentTree.MAX_BLOCKS;

    private final ExtentTree tree;
    private final StepCredits credits;

    ExtentShift(ExtentTree tree, StepCredits credits) {
        this.tree = tree;
        this.credits = credits;
    }

    /** Moves the extents from logical block {@code from} on by {@code delta} blocks (see the class). */
    void shift(long from, long delta) throws Ext4Exception {
        if (delta < 0) {
            Mapping gap = from + delta < 0 ? null : tree.map(from + delta, -delta);
            if (gap == null || !gap.isHole() || gap.length() != -delta) {
                throw new Ext4Exception(Errno.EINVAL, "inode " + tree.ino + ": cannot shift blocks from " + from + " left by " + -delta
                        + " over mapped blocks");
            }
            shiftLeft(from, delta);
        } else if (delta > 0) {
            Level[] last = tree.findPath(MAX_BLOCKS - 1);
            Level leaf = last[last.length - 1];
            if (leaf.pos >= 0 && leaf.node.extent(leaf.entries() - 1).logicalEnd() + delta > MAX_BLOCKS) {
                throw new Ext4Exception(Errno.EINVAL, "inode " + tree.ino + ": shifting right by " + delta + " passes the last logical block");
            }
            Level[] at = tree.findPath(from);
            Level l = at[at.length - 1];
            if (l.pos >= 0 && l.node.extent(l.pos).logical() < from && l.node.extent(l.pos).contains(from)) {
                tree.splitAt(from); // as ext4_insert_range(): the extent across from is split there first
            }
            shiftRight(from, delta);
        }
        credits.before(4); // a root that takes its child's entries frees the child's block
        tree.shrinkRoot();
    }

    private void shiftLeft(long from, long delta) throws Ext4Exception {
        boolean first = true;
        for (long cur = from; cur != MAX_BLOCKS; ) {
            Level[] path = tree.findPath(cur);
            Level leaf = path[path.length - 1];
            int k = firstAtOrAfter(leaf, from);
            long next = ExtentTree.nextLeafBlock(path);
            if (k < leaf.entries()) {
                credits.before(path.length);
                shiftLeaf(leaf, k, delta);
                if (first && k > 0) {
                    ExtentTree.mergeRight(leaf, k - 1);
                }
                fixKeys(path);
            }
            first = false;
            cur = next;
        }
    }

    private void shiftRight(long from, long delta) throws Ext4Exception {
        long cur = MAX_BLOCKS - 1;
        while (true) {
            Level[] path = tree.findPath(cur);
            Level leaf = path[path.length - 1];
            int k = firstAtOrAfter(leaf, from);
            if (k >= leaf.entries()) {
                return;
            }
            long oldFirst = leaf.node.logical(0);
            credits.before(path.length);
            shiftLeaf(leaf, k, delta);
            fixKeys(path);
            if (k > 0 || !hasLeafBefore(path)) {
                return;
            }
            cur = oldFirst - 1; // in the previous leaf: its key is below the ones just moved
        }
    }

    /** Whether a leaf lies left of the path's leaf: some index on the path is not at its first entry. */
    private static boolean hasLeafBefore(Level[] path) {
        for (int d = 0; d < path.length - 1; d++) {
            if (path[d].pos > 0) {
                return true;
            }
        }
        return false;
    }

    /** The first extent of a leaf that starts at or after {@code from}; entries() when none. */
    private static int firstAtOrAfter(Level leaf, long from) {
        int k = 0;
        while (k < leaf.entries() && leaf.node.logical(k) < from) {
            k++;
        }
        return k;
    }

    private static void shiftLeaf(Level leaf, int k, long delta) {
        for (int i = k; i < leaf.entries(); i++) {
            Extent e = leaf.node.extent(i);
            leaf.node.setExtent(i, new Extent(e.logical() + delta, e.physical(), e.length(), e.unwritten()));
        }
    }

    /** Writes a changed leaf and makes every index key on its path the first logical block below it. */
    private void fixKeys(Level[] path) throws Ext4Exception {
        int depth = path.length - 1;
        tree.dirty(path[depth]);
        for (int d = depth - 1; d >= 0; d--) {
            tree.setKey(path[d], path[d + 1].node.logical(0));
        }
    }
}
