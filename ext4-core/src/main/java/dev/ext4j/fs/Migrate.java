package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.blockmap.BlockSource;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.blockmap.IndirectMap;
import dev.ext4j.format.Extent;
import dev.ext4j.format.ExtentNode;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.journal.Transactions;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * EXT4_IOC_MIGRATE (fs/ext4/migrate.c, ext4_ext_migrate()): a block-mapped file or directory gets
 * an extent tree that maps the same blocks.
 *
 * <p>As the kernel, the tree is built beside the file, in steps that each fit a journal handle, and
 * swapped in with one small transaction (ext4_ext_swap_inode_data()), so a fragmented file never
 * needs a transaction larger than the log, and writers are not held up while it is built:
 * <ol>
 * <li>under the inode's read lock, the indirect map is read: its data blocks coalesced into
 *     extents of at most 32768 blocks, and its indirect blocks;
 * <li>a temporary inode is allocated (no name, no links) and put on the orphan list;
 * <li>with no inode lock, the new tree is built from those extents in a detached root, one extent
 *     per step; its index and leaf blocks (checksummed with the inode's seed) come from the
 *     inode's account. Each block the tree takes is at once mapped as a data block of the
 *     temporary inode, and that inode is written before the handle restarts
 *     ({@link Transactions#needsRestart}): whatever a crash leaves, the orphan cleanup of the next
 *     mount (or e2fsck) frees exactly the tree's blocks. The kernel keeps the tree itself in its
 *     temporary inode, whose cleanup after a crash would free the file's data blocks with it;
 *     here the temporary inode never maps them;
 * <li>under the inode's write lock the map is read again. If it changed (a write filled a hole or
 *     a truncate freed blocks: the kernel's EXT4_STATE_EXT_MIGRATE was cleared), the temporary
 *     inode is deleted with the new tree's blocks and the answer is EAGAIN, the file as it was.
 *     Otherwise, in one transaction: i_block becomes the tree's root, EXTENTS_FL is set, i_blocks
 *     loses the indirect blocks and gains the tree's, the inode is written; the temporary inode
 *     gives up the tree's blocks (its own map blocks are freed), leaves the orphan list and is
 *     freed; the indirect blocks (never the data blocks) are freed.
 * </ol>
 * Content, size and every other attribute stay as they were. The temporary inode takes no inode
 * lock: it has no name, and nothing but this migration and the orphan list knows its number.
 */
final class Migrate {
    /** What runs between building the tree and swapping it in; tests change the file there. */
    @FunctionalInterface
    interface Hook {
        void run() throws Ext4Exception;
    }

    /**
     * Credits of one step that inserts an extent: for each of the two trees (the new one and the
     * temporary inode's map), the blocks of a path that may split at every level and grow by one
     * (depth + 2 changed, depth + 2 new), a bitmap and a descriptor block for each new block; then
     * the temporary inode and the superblock (ext4_ext_calc_credits_for_single_extent() in spirit).
     */
    static int insertCredits(int newDepth, int tmpDepth) {
        return 4 * (newDepth + 2) + 4 * (tmpDepth + 2) + 2;
    }

    /** What a migration asks of the filesystem. */
    interface Host {
        /** The in-core inode. */
        InodeInfo inode(long ino) throws Ext4Exception;

        /** Stamps and writes a changed inode; the caller holds its lock (the temporary inode needs none). */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;

        /** The blocks one operation on {@code ino} takes and gives back, with the reserves. */
        BlockAccount account(long ino, Inode inode);

        /** A journal handle for {@code credits} blocks, started with no inode lock held. */
        Transactions.Handle startHandle(int credits);

        /** The inode's checksum seed (crc32c of the fs seed, its number and generation). */
        int inodeSeed(long ino, Inode inode);

        /** Frees an inode whose blocks are gone (the temporary one left over after a failure). */
        void freeInode(long ino, Inode copy) throws Ext4Exception;
    }

    private final Superblock sb;
    private final BufferCache cache;
    private final Transactions tx;
    private final InodeLocks locks;
    private final Allocator allocator;
    private final Orphans orphans;
    private final boolean metadataCsum;
    private final Host host;
    private final Hook beforeSwap;
    /** Test hook: when set, runs after every step with no handle running (a test commits there). */
    private final Hook betweenSteps;

    Migrate(Superblock sb, BufferCache cache, Transactions tx, InodeLocks locks, Allocator allocator, Orphans orphans,
            Host host, Hook beforeSwap, Hook betweenSteps) {
        this.sb = sb;
        this.cache = cache;
        this.tx = tx;
        this.locks = locks;
        this.allocator = allocator;
        this.orphans = orphans;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.host = host;
        this.beforeSwap = beforeSwap;
        this.betweenSteps = betweenSteps;
    }

    /** The indirect map's contents: data as extents in logical order, and its indirect blocks. */
    private record Snapshot(List<Extent> extents, List<Long> indirect) {
    }

    void run(long ino) throws Ext4Exception {
        if (!sb.has(Feature.EXTENTS)) {
            throw new Ext4Exception(Errno.EINVAL, "the filesystem does not have the extent feature (tune2fs -O extent)");
        }
        Snapshot before;
        InodeInfo info;
        try (InodeLocks.Locked l = locks.read(ino)) {
            info = host.inode(ino);
            if (!migratable(info)) {
                return;
            }
            before = snapshot(info);
        }
        Inode original = info.inode();
        Temp tmp = createTemp(ino);
        boolean swapped = false;
        try {
            Tracked source = new Tracked(host.account(ino, original), tmp);
            ByteBuffer root = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
            ExtentTree.initEmpty(root);
            ExtentTree tree = ExtentTree.writable(cache, ino, root, info.csumSeed(), metadataCsum, source);
            build(tree, before.extents(), tmp);
            beforeSwap.run();
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                InodeInfo now = host.inode(ino);
                if (!migratable(now) || now.inode().flags() != original.flags() || !snapshot(now).equals(before)) {
                    throw new Ext4Exception(Errno.EAGAIN, "inode " + ino + " changed while it was being migrated; try again");
                }
                int credits = swapCredits(before.indirect(), tmp.meta);
                if (credits > tx.maxCredits()) {
                    throw new Ext4Exception(Errno.ENOSPC, "inode " + ino + ": swapping in the new tree needs " + credits
                            + " journal blocks in one transaction, the journal takes " + tx.maxCredits());
                }
                if (tx.needsRestart(credits)) {
                    tx.restart(credits); // nothing changed in this handle yet
                }
                Inode copy = now.inode().copy();
                copy.iBlock().put(0, root, 0, Inode.I_BLOCK_SIZE);
                copy.setFlags(copy.flags() | Inode.EXTENTS_FL);
                int bs = sb.blockSize();
                long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs)
                        + (source.held.size() - (long) before.indirect().size()) * (bs / 512);
                copy.setBlocks512(sectors, bs);
                host.writeInode(ino, copy);
                tmp.giveUp(); // same transaction: the tree's blocks are the file's from now on
                swapped = true;
                for (long b : before.indirect()) {
                    allocator.freeBlocks(b, 1);
                }
            }
        } catch (Ext4Exception | RuntimeException e) {
            if (!swapped) {
                try {
                    tmp.delete();
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
            }
            throw e;
        }
    }

    /**
     * Inserts the extents one step at a time; before a step the handle gets its credits, or the
     * temporary inode is written and the handle restarts. The handle runs without inode locks.
     */
    private void build(ExtentTree tree, List<Extent> extents, Temp tmp) throws Ext4Exception {
        Transactions.Handle h = host.startHandle(insertCredits(tree.depth(), tmp.tree.depth()));
        try {
            for (Extent e : extents) {
                int need = insertCredits(tree.depth(), tmp.tree.depth());
                if (tx.needsRestart(need)) {
                    tmp.write();
                    tx.restart(need);
                }
                tree.insert(e);
                if (betweenSteps != null) {
                    tmp.write();
                    h.close();
                    h = null;
                    betweenSteps.run();
                    h = host.startHandle(need);
                }
            }
            tmp.write();
        } finally {
            if (h != null) {
                h.close();
            }
        }
    }

    /**
     * The swap's transaction: the file's and the temporary inode's table blocks, the superblock and
     * the previous orphan's inode (the orphan list), the inode bitmap and descriptor, and a bitmap
     * and a descriptor block for each group that the freed indirect and temporary map blocks are in.
     */
    private int swapCredits(List<Long> indirect, Set<Long> tmpMeta) {
        long perGroup = sb.blocksPerGroup();
        Set<Long> groups = new HashSet<>();
        for (long b : indirect) {
            groups.add(b / perGroup);
        }
        for (long b : tmpMeta) {
            groups.add(b / perGroup);
        }
        return 6 + 2 * groups.size();
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
        new IndirectMap(cache, info.ino(), info.inode().iBlock()).visit(new IndirectMap.Visitor() {
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

/** Allocates the temporary inode near {@code near}, links it into the orphan list and writes it, in a handle of its own. */
private Temp createTemp(long near) throws Ext4Exception {
        try (Transactions.Handle h = host.startHandle(Transactions.DEFAULT_CREDITS)) {
            long ino = allocator.allocateInode(near, false);
            Inode in = Namei.blankInode(sb, Inode.S_IFREG | 0600, true); // no link: an orphan from the start
            Temp t = new Temp(ino, in);
            try {
                orphans.add(ino);
                t.dirty = true;
                t.write();
            } catch (Ext4Exception | RuntimeException e) {
                try {
                    orphans.remove(ino);
                    allocator.freeInode(ino, false);
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
                throw e;
            }
            return t;
        }
    }

    /**
     * The temporary inode (ext4_ext_migrate()'s tmp_inode): a regular file without links on the
     * orphan list whose data blocks are the new tree's blocks, mapped by its own small extent tree.
     */
    private final class Temp {
        final long ino;
        private final Inode inode;
        private final ByteBuffer root = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
        final ExtentTree tree;
        /** The temporary tree's own blocks (not the new tree's). */
        final Set<Long> meta = new LinkedHashSet<>();
        /** New-tree block to the logical block it has in the temporary inode. */
        final Map<Long, Long> logical = new HashMap<>();
        private long nextLogical;
        private boolean dirty;

        private Temp(long ino, Inode inode) {
            this.ino = ino;
            this.inode = inode;
            ExtentTree.initEmpty(root);
            BlockAccount acct = host.account(ino, inode);
            BlockSource own = new BlockSource() {
                @Override
                public long allocateMetaBlock(long goal) throws Ext4Exception {
                    long b = acct.allocateMetaBlock(goal);
                    meta.add(b);
                    return b;
                }

                @Override
                public void freeBlocks(long start, long length) throws Ext4Exception {
                    for (long b = start; b < start + length; b++) {
                        meta.remove(b);
                    }
                    acct.freeBlocks(start, length);
                }
            };
            this.tree = ExtentTree.writable(cache, ino, root, host.inodeSeed(ino, inode), metadataCsum, own);
        }


        /** Maps {@code block}, just taken by the new tree, as the temporary inode's next data block. */
        void adopt(long block) throws Ext4Exception {
            tree.insert(new Extent(nextLogical, block, 1, false));
            logical.put(block, nextLogical);
            nextLogical++;
            dirty = true;
        }

        /** Unmaps (and so frees) {@code block}, which the new tree gave back. */
        void release(long block) throws Ext4Exception {
            Long l = logical.remove(block);
            if (l == null) {
                throw new IllegalStateException("block " + block + " is not in temporary inode " + ino);
            }
            tree.removeRange(l, l + 1);
            dirty = true;
        }

        /** Writes the inode as the steps so far left it, when they changed it; the caller runs a handle. */
        void write() throws Ext4Exception {
            if (!dirty) {
                return;
            }
            int bs = sb.blockSize();
            Inode copy = inode.copy();
            copy.iBlock().put(0, root, 0, Inode.I_BLOCK_SIZE);
            copy.setSize(nextLogical * bs);
            copy.setBlocks512((logical.size() + (long) meta.size()) * (bs / 512), bs);
            host.writeInode(ino, copy);
            dirty = false;
        }

        /**
         * At the swap, in its handle: the new tree's blocks stay where they are (the file owns
         * them now), the temporary map's own blocks are freed, and the inode leaves the orphan
         * list deleted and is freed.
         */
        void giveUp() throws Ext4Exception {
            for (long b : List.copyOf(meta)) {
                allocator.freeBlocks(b, 1);
            }
            meta.clear();
            logical.clear();
            ExtentTree.initEmpty(root);
            nextLogical = 0;
            orphans.remove(ino);
            Inode copy = inode.copy();
            ExtentTree.initEmpty(copy.iBlock());
            copy.setSize(0);
            copy.setBlocks512(0, sb.blockSize());
            copy.setDtime(Ext4FileSystem.Time.now().seconds());
            host.writeInode(ino, copy);
            allocator.freeInode(ino, false);
        }

        /**
         * A migration that does not complete: the inode is deleted with every block it maps (the
         * new tree's and its own), as the orphan cleanup after a crash would, in the steps of a
         * long truncate.
         */
        void delete() throws Ext4Exception {
            try (Transactions.Handle h = host.startHandle(Transactions.DEFAULT_CREDITS)) {
                write();
            }
            try (InodeLocks.Held h = locks.lockAll(ino)) {
                host.freeInode(ino, host.inode(ino).inode().copy());
            }
        }
    }

    /** The new tree's block source: each block it takes goes to the temporary inode at once. */
    private static final class Tracked implements BlockSource {
        private final BlockSource source;
        private final Temp tmp;
        final Set<Long> held = new LinkedHashSet<>();

        Tracked(BlockSource source, Temp tmp) {
            this.source = source;
            this.tmp = tmp;
        }

        @Override
        public long allocateMetaBlock(long goal) throws Ext4Exception {
            long b = source.allocateMetaBlock(goal);
            try {
                tmp.adopt(b);
            } catch (Ext4Exception | RuntimeException e) {
                try {
                    source.freeBlocks(b, 1);
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
                throw e;
            }
            held.add(b);
            return b;
        }

        @Override
        public void freeBlocks(long start, long length) throws Ext4Exception {
            for (long b = start; b < start + length; b++) {
                held.remove(b);
                tmp.release(b); // the temporary inode's unmapping frees it
            }
        }
    }
}
