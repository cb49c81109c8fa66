package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.extent.BlockSource;
import dev.ext4j.extent.ExtentTree;
import dev.ext4j.extent.IndirectMap;
import dev.ext4j.format.Extent;
import dev.ext4j.format.ExtentNode;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.journal.Transactions;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * EXT4_IOC_MIGRATE (fs/ext4/migrate.c, ext4_ext_migrate()): a block-mapped file or directory gets
 * an extent tree that maps the same blocks.
 *
 * <p>As the kernel builds the tree in a temporary inode and swaps it in (ext4_ext_swap_inode_data()),
 * this builds it in a detached i_block without the inode's lock, so writers are not held up:
 * <ol>
 * <li>under the inode's read lock, the indirect map is read: its data blocks coalesced into
 *     extents of at most 32768 blocks, and its indirect blocks;
 * <li>with no inode lock, in a journal handle of its own, a new tree is built from those extents
 *     (index and leaf blocks are allocated as needed, checksummed with the inode's seed);
 * <li>under the inode's write lock the map is read again. If it changed (a write filled a hole or
 *     a truncate freed blocks: the kernel's EXT4_STATE_EXT_MIGRATE was cleared), the new tree's
 *     blocks are freed and the answer is EAGAIN, the file as it was. Otherwise i_block becomes the
 *     tree's root, EXTENTS_FL is set, i_blocks loses the indirect blocks and gains the tree's, the
 *     inode is written, and the indirect blocks (never the data blocks) are freed.
 * </ol>
 * Content, size and every other attribute stay as they were.
 */
final class Migrate {
    /** What runs between building the tree and swapping it in; tests change the file there. */
    @FunctionalInterface
    interface Hook {
        void run() throws Ext4Exception;
    }

    private final Ext4FileSystem fs;
    private final Hook beforeSwap;

    Migrate(Ext4FileSystem fs) {
        this(fs, () -> { });
    }

    Migrate(Ext4FileSystem fs, Hook beforeSwap) {
        this.fs = fs;
        this.beforeSwap = beforeSwap;
    }

    /** The indirect map's contents: data as extents in logical order, and its indirect blocks. */
    private record Snapshot(List<Extent> extents, List<Long> indirect) {
    }

    void run(long ino) throws Ext4Exception {
        if (!fs.superblock().has(Feature.EXTENTS)) {
            throw new Ext4Exception(Errno.EINVAL, "the filesystem does not have the extent feature (tune2fs -O extent)");
        }
        Snapshot before;
        InodeInfo info;
        try (InodeLocks.Locked l = fs.locks().read(ino)) {
            info = fs.inode(ino);
            if (!migratable(info)) {
                return;
            }
            before = snapshot(info);
        }
        Inode original = info.inode();
        BlockAccount acct = fs.account(ino, original);
        Tracked source = new Tracked(acct);
        ByteBuffer root = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
        ExtentTree.initEmpty(root);
        boolean swapped = false;
        try {
            try (Transactions.Handle h = fs.startHandle(Transactions.DEFAULT_CREDITS)) {
                ExtentTree tree = ExtentTree.writable(fs.cache(), ino, root, info.csumSeed(), fs.metadataCsum(), source);
                for (Extent e : before.extents()) {
                    tree.insert(e);
                }
            }
            beforeSwap.run();
            try (InodeLocks.Held h = fs.locks().lockAll(ino)) {
                InodeInfo now = fs.inode(ino);
                if (!migratable(now) || now.inode().flags() != original.flags() || !snapshot(now).equals(before)) {
                    throw new Ext4Exception(Errno.EAGAIN, "inode " + ino + " changed while it was being migrated; try again");
                }
                Inode copy = now.inode().copy();
                copy.iBlock().put(0, root, 0, Inode.I_BLOCK_SIZE);
                copy.setFlags(copy.flags() | Inode.EXTENTS_FL);
                int bs = fs.blockSize();
                long sectors = copy.blocks512(fs.superblock().has(Feature.HUGE_FILE), bs)
                        + (source.held.size() - (long) before.indirect().size()) * (bs / 512);
                copy.setBlocks512(sectors, bs);
                fs.writeInode(ino, copy);
                swapped = true; // the tree is the inode's now: a failure below must not free it
                for (long b : before.indirect()) {
                    fs.allocator().freeBlocks(b, 1);
                }
            }
        } catch (Ext4Exception | RuntimeException e) {
            if (swapped) {
                throw e;
            }
            try (Transactions.Handle h = fs.startHandle(Transactions.DEFAULT_CREDITS)) {
                source.releaseAll();
            } catch (Ext4Exception | RuntimeException f) {
                e.addSuppressed(f);
            }
            throw e;
        }
    }

    /**
     * Whether the inode is one to migrate: EINVAL for extent-mapped and inline files (as the
     * kernel); false (nothing to do, not an error) for a symlink without blocks.
     */
    private static boolean migratable(InodeInfo info) throws Ext4Exception {
        Inode i = info.inode();
        if (i.hasFlag(Inode.EXTENTS_FL)) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + info.ino() + " is extent-mapped already");
        }
        if (i.hasFlag(Inode.INLINE_DATA_FL)) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + info.ino() + " has inline data");
        }
        if (!i.isRegular() && !i.isDirectory() && !i.isSymlink()) {
            throw new Ext4Exception(Errno.EINVAL, "inode " + info.ino() + " is not a file, directory or symlink");
        }
        return info.map() != null; // a fast symlink has no map
    }

    private Snapshot snapshot(InodeInfo info) throws Ext4Exception {
        List<Extent> extents = new ArrayList<>();
        List<Long> indirect = new ArrayList<>();
        new IndirectMap(fs.cache(), info.ino(), info.inode().iBlock()).visit(new IndirectMap.Visitor() {
            private long lblk = -1;
            private long pblk;
            private int length;

            @Override
            public void data(long l, long p) {
                if (length > 0 && l == lblk + length && p == pblk + length && length < ExtentNode.INIT_MAX_LEN) {
                    length++;
                    extents.set(extents.size() - 1, new Extent(lblk, pblk, length, false));
                    return;
                }
                lblk = l;
                pblk = p;
                length = 1;
                extents.add(new Extent(l, p, 1, false));
            }

            @Override
            public void indirect(long block) {
                indirect.add(block);
            }
        });
        return new Snapshot(extents, indirect);
    }

    /** The new tree's blocks, so that a migration that does not complete gives them all back. */
    private static final class Tracked implements BlockSource {
        private final BlockSource source;
        final Set<Long> held = new LinkedHashSet<>();

        Tracked(BlockSource source) {
            this.source = source;
        }

        @Override
        public long allocateMetaBlock(long goal) throws Ext4Exception {
            long b = source.allocateMetaBlock(goal);
            held.add(b);
            return b;
        }

        @Override
        public void freeBlocks(long start, long length) throws Ext4Exception {
            for (long b = start; b < start + length; b++) {
                held.remove(b);
            }
            source.freeBlocks(start, length);
        }

        void releaseAll() throws Ext4Exception {
            for (long b : List.copyOf(held)) {
                freeBlocks(b, 1); // the allocator drops them from the cache: never referred to, they must not reach the disk later
            }
        }
    }
}
