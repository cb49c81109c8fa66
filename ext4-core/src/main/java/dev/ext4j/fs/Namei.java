package dev.ext4j.fs;

import dev.ext4j.dir.Names;
import java.util.Arrays;
import dev.ext4j.inline.InlineDirectory;
import dev.ext4j.dir.DirSink;
import dev.ext4j.dir.DirEntries;
import dev.ext4j.dir.BlockDirectory;
import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.io.BufferCache;
import dev.ext4j.dir.DirChanges;
import dev.ext4j.dir.DirectoryGrowth;
import dev.ext4j.dir.DirectoryWriter;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.inline.InlineData;
import dev.ext4j.inline.InlineDirectoryWriter;
import java.nio.ByteBuffer;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Namespace changes (fs/ext4/namei.c): create, mknod, mkdir, symlink, link, unlink, rmdir, rename.
 * Each takes all the inode locks it needs at once (see {@link InodeLocks}), changes copies of the
 * inodes and writes each once at the end.
 */
final class Namei {
    /** EXT4_LINK_MAX: above it a directory's count sticks at 1 (dir_nlink) and links fail. */
    static final int LINK_MAX = 65000;

    /** What namespace changes need from the mounted filesystem. */
    interface Host {
        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;

        /** A block account for one operation on {@code ino}, with the inode's group as the first place to look. */
        BlockAccount account(long ino, Inode inode);

        /** The directory entry format, replaced when an online resize changes the inode count. */
        DirFormat dirFormat();
    }

    private final Superblock sb;
    private final SuperState state;
    private final BufferCache cache;
    private final boolean metadataCsum;
    private final InodeTable inodes;
    private final InodeLocks locks;
    private final DentryCache dentries;
    /** Null on a read-only mount. */
    private final Allocator allocator;
    private final Orphans orphans;
    private final FileRead fileRead;
    private final Xattrs xattrs;
    private final Evict evict;
    private final Host host;
    private final int bs;

    Namei(Superblock sb, SuperState state, BufferCache cache, InodeTable inodes, InodeLocks locks, DentryCache dentries,
          Allocator allocator, Orphans orphans, FileRead fileRead, Xattrs xattrs, Evict evict, Host host) {
        this.sb = sb;
        this.state = state;
        this.cache = cache;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.inodes = inodes;
        this.locks = locks;
        this.dentries = dentries;
        this.allocator = allocator;
        this.orphans = orphans;
        this.fileRead = fileRead;
        this.xattrs = xattrs;
        this.evict = evict;
        this.host = host;
        this.bs = sb.blockSize();
    }

    private static void checkName(byte[] name) throws Ext4Exception {
        Names.check(name);
        if (Names.isDotOrDotDot(name)) {
            throw new Ext4Exception(Errno.EEXIST, "\".\" and \"..\" always exist");
        }
    }

    /**
     * A directory being changed: its inode copy, its map and its entries. An inline directory has
     * no map until its entries leave the inode (see {@link InlineDirectoryWriter}).
     */
    private final class Dir implements DirectoryGrowth, InlineDirectoryWriter.BlockConversion {
        final long ino;
        final Inode copy;
        final BlockAccount acct;
        final int seed;
        FileMap map;
        DirChanges entries;

        Dir(long ino) throws Ext4Exception {
            InodeInfo info = inodes.get(ino);
            if (!info.inode().isDirectory()) {
                throw new Ext4Exception(Errno.ENOTDIR, "inode " + ino + " is not a directory");
            }
            if (info.inode().linksCount() == 0) {
                throw new Ext4Exception(Errno.ENOENT, "directory inode " + ino + " was removed");
            }
            if (info.inode().hasFlag(Inode.CASEFOLD_FL) || info.inode().hasFlag(Inode.ENCRYPT_FL)) {
                throw new Ext4Exception(Errno.EOPNOTSUPP, "directory inode " + ino + " is casefolded or encrypted; ext4j cannot change it");
            }
            this.ino = ino;
            this.copy = info.inode().copy();
            this.acct = host.account(ino, copy);
            this.seed = info.csumSeed();
            if (copy.hasFlag(Inode.INLINE_DATA_FL)) {
                this.entries = new InlineDirectoryWriter(cache, ino, copy, host.dirFormat(), seed, sb.has(Feature.EXTENTS), this);
                return;
            }
            this.map = FileMap.of(cache, ino, copy, seed, metadataCsum, acct);
            this.entries = blockEntries();
        }

        private DirectoryWriter blockEntries() throws Ext4Exception {
            return new DirectoryWriter(cache, ino, map::map, copy.size(), copy.hasFlag(Inode.INDEX_FL),
                    host.dirFormat(), seed, sb.defHashVersion(), this);
        }

        @Override
        public long allocateFirstBlock() throws Ext4Exception {
            return acct.allocateJournaled(0, 1).start(); // a directory block: through the journal
        }

        @Override
        public DirChanges mapFirstBlock(long pblk) throws Ext4Exception {
            map = FileMap.of(cache, ino, copy, seed, metadataCsum, acct);
            map.insert(0, pblk, 1, false);
            entries = blockEntries();
            return entries;
        }

        @Override
        public long allocateBlock(long lblk) throws Ext4Exception {
            long goal = lblk == 0 ? 0 : map.map(lblk - 1, 1).physical() + 1;
            long pblk = acct.allocateJournaled(goal, 1).start(); // a directory block: through the journal
            Ext4Exception failed = FileWrite.insertOrFree(map, acct, lblk, pblk, 1, false); // no block for the tree or indirect block that would map it
            if (failed != null) {
                throw failed;
            }
            return pblk;
        }

        @Override
        public void setSize(long sizeBytes) {
            copy.setSize(sizeBytes);
        }

        @Override
        public void setIndexed(boolean indexed) {
            copy.setFlags(indexed ? copy.flags() | Inode.INDEX_FL : copy.flags() & ~Inode.INDEX_FL);
        }

        /**
         * Adds an entry. When the add fails part way (ENOSPC after an index split), the inode still
         * records what it kept (new blocks, size, index flag), as the kernel marks the directory
         * dirty on those error paths, before the error goes on.
         */
        void add(byte[] name, long target, int fileType) throws Ext4Exception {
            try {
                entries.addNew(name, target, fileType); // every caller looked the name up first
            } catch (Ext4Exception | RuntimeException e) {
                try {
                    write();
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
                throw e;
            }
        }

        void touchAndWrite() throws Ext4Exception {
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            copy.setMtime(now.seconds(), now.nanos());
            copy.setCtime(now.seconds(), now.nanos());
            write();
        }

        void write() throws Ext4Exception {
            long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs) + acct.delta() * (bs / 512);
            copy.setBlocks512(Math.max(0, sectors), bs);
            host.writeInode(ino, copy);
        }
    }

    /** Creates a regular file, device, fifo, socket, directory or symlink named {@code name} in {@code dirIno}. */
    long create(long dirIno, byte[] name, int mode, int major, int minor, byte[] symlinkTarget, long uid, long gid) throws Ext4Exception {
        state.requireWritable();
        checkName(name);
        int type = mode & Inode.S_IFMT;
        boolean isDir = type == Inode.S_IFDIR;
        if (symlinkTarget != null && (symlinkTarget.length == 0 || symlinkTarget.length >= Math.min(bs, 4096))) {
            throw new Ext4Exception(symlinkTarget.length == 0 ? Errno.ENOENT : Errno.ENAMETOOLONG,
                    "symlink target of " + symlinkTarget.length + " bytes");
        }
        try (InodeLocks.Held h = locks.lockAll(dirIno)) {
            Dir dir = new Dir(dirIno);
            if (dir.entries.reader().lookup(name) != 0) {
                throw new Ext4Exception(Errno.EEXIST, "entry exists in directory inode " + dirIno);
            }
            requireMayAdd(dirIno, dir.copy);
            if (isDir) {
                requireRoomForSubdir(dir);
            }
            long ino = allocator.allocateInode(dirIno, isDir);
            boolean written = false;
            try {
                Inode in = newInode(ino, mode, uid, gid, dir.copy);
                BlockAccount acct = host.account(ino, in);
                if (isDir && sb.has(Feature.INLINE_DATA) && InlineDirectoryWriter.initNew(in, ino, dirIno, host.dirFormat())) {
                    in.setLinksCount(2); // ext4_try_create_inline_dir()
                } else if (isDir) {
                    in.setLinksCount(2);
                    FileMap map = FileMap.of(cache, ino, in, inodes.seed(ino, in), metadataCsum, acct);
                    long blk = acct.allocateJournaled(0, 1).start(); // a directory block: through the journal
                    DirectoryWriter.initNew(cache, blk, ino, dirIno, host.dirFormat(), inodes.seed(ino, in));
                    map.insert(0, blk, 1, false);
                    in.setSize(bs);
                } else if (type == Inode.S_IFCHR || type == Inode.S_IFBLK) {
                    in.setFlags(in.flags() & ~Inode.EXTENTS_FL);
                    in.setIBlock(encodeDevice(major, minor));
                } else if (type == Inode.S_IFIFO || type == Inode.S_IFSOCK) {
                    in.setFlags(in.flags() & ~Inode.EXTENTS_FL);
                    in.setIBlock(ByteBuffer.allocate(Inode.I_BLOCK_SIZE));
                } else if (symlinkTarget != null) {
                    writeSymlink(ino, in, acct, symlinkTarget);
                }
                in.setBlocks512(acct.delta() * (bs / 512), bs);
                xattrs.inheritAcls(ino, in, dirIno, dir.copy);
                host.writeInode(ino, in);
                written = true;
                dir.add(name, ino, DirEntry.fileTypeOfMode(mode));
            } catch (Ext4Exception | RuntimeException e) {
                try {
                    if (written) {
                        // as the kernel's iput() of a new inode whose entry failed: its blocks
                        // go, and it is written deleted (dtime, no links) before it is freed
                        evict.freeInode(ino, inodes.get(ino).inode().copy());
                    } else {
                        allocator.freeInode(ino, isDir);
                    }
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
                throw e;
            }
            if (isDir) {
                incLinks(dir.copy);
            }
            dir.touchAndWrite();
            dentries.put(dirIno, name, ino);
            return ino;
        }
    }

    /**
     * O_TMPFILE (ext4_tmpfile()): a regular file with no name, made as {@link #create} makes one in
     * {@code dirIno} (owner, setgid group, inherited flags and default ACL). It has no link and is
     * on the orphan list at once, so a crash frees it; it is returned open once, and the release of
     * that handle frees it unless {@link #link} gave it a name first. The directory is not changed.
     */
    long tmpfile(long dirIno, int mode, long uid, long gid) throws Ext4Exception {
        state.requireWritable();
        int type = mode & Inode.S_IFMT;
        if (type != 0 && type != Inode.S_IFREG) {
            throw new Ext4Exception(Errno.EINVAL, "O_TMPFILE makes regular files only");
        }
        try (InodeLocks.Held h = locks.lockAll(dirIno)) {
            Inode dir = inodes.get(dirIno).inode();
            if (!dir.isDirectory()) {
                throw new Ext4Exception(Errno.ENOTDIR, "inode " + dirIno + " is not a directory");
            }
            if (dir.linksCount() == 0) {
                throw new Ext4Exception(Errno.ENOENT, "directory inode " + dirIno + " was removed");
            }
            requireMayAdd(dirIno, dir);
            long ino = allocator.allocateInode(dirIno, false);
            try {
                Inode in = newInode(ino, (mode & 07777) | Inode.S_IFREG, uid, gid, dir);
                in.setLinksCount(0); // d_tmpfile()
                xattrs.inheritAcls(ino, in, dirIno, dir);
                host.writeInode(ino, in);
            } catch (Ext4Exception | RuntimeException e) {
                try {
                    allocator.freeInode(ino, false);
                } catch (Ext4Exception | RuntimeException f) {
                    e.addSuppressed(f);
                }
                throw e;
            }
            // nobody knows the number yet: the handle, the mark and the orphan link come before anyone can
            evict.open(ino);
            InodeInfo info = inodes.get(ino);
            info.setLinkable(true);
            orphans.add(ino);
            host.writeInode(ino, info.inode().copy()); // stamps its link in the orphan chain
            return ino;
        }
    }

    private void writeSymlink(long ino, Inode in, BlockAccount acct, byte[] target) throws Ext4Exception {
        in.setSize(target.length);
        if (target.length < Inode.I_BLOCK_SIZE) {
            in.setFlags(in.flags() & ~Inode.EXTENTS_FL);
            ByteBuffer b = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
            b.put(target);
            in.setIBlock(b);
            return;
        }
        if (sb.has(Feature.INLINE_DATA) && target.length <= InlineData.maxSize(in, ino)) {
            InlineData.createWith(in, ino, target); // as e2fsprogs, and ext4_symlink() through page_symlink() in older kernels
            return;
        }
        FileMap map = FileMap.of(cache, ino, in, inodes.seed(ino, in), metadataCsum, acct);
        long blk = acct.allocateData(0, 1).start();
        byte[] block = new byte[bs];
        System.arraycopy(target, 0, block, 0, target.length);
        cache.writeDirect(blk, 0, ByteBuffer.wrap(block));
        map.insert(0, blk, 1, false);
    }

    /** The old/new device encoding of i_block (ext4_encode_dev_*): word 0 for small numbers, else word 1. */
    private static ByteBuffer encodeDevice(int major, int minor) {
        ByteBuffer b = ByteBuffer.allocate(Inode.I_BLOCK_SIZE).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        if (major < 256 && minor < 256) {
            b.putInt(0, (major << 8) | minor);
        } else {
            b.putInt(4, (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12));
        }
        return b;
    }

    /** A fresh inode: mode, owner (setgid directories pass on their group), times, generation, extents root. */
    private Inode newInode(long ino, int mode, long uid, long gid, Inode parent) throws Ext4Exception {
        int m = mode;
        long g = gid;
        if ((parent.mode() & 02000) != 0) {
            g = parent.gid();
            if ((mode & Inode.S_IFMT) == Inode.S_IFDIR) {
                m |= 02000;
            }
        }
        Inode in = blankInode(sb, m, sb.has(Feature.EXTENTS));
        in.setFlags(in.flags() | InodeFlags.inherited(parent.flags(), m)); // __ext4_new_inode()
        in.setUid(uid);
        in.setGid(g);
        in.setLinksCount(1);
        return in;
    }

    /**
     * An inode as __ext4_new_inode() starts one: the extra size, {@code mode}, all four times now, a
     * random generation, and an empty extent root with {@code extents}; no link, owned by root.
     */
    static Inode blankInode(Superblock sb, int mode, boolean extents) {
        int isz = sb.inodeSize();
        Inode in = new Inode(new byte[isz]);
        if (isz > Inode.GOOD_OLD_SIZE) {
            in.setExtraIsize(Math.min(32, isz - Inode.GOOD_OLD_SIZE));
        }
        in.setMode(mode);
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        in.setAtime(now.seconds(), now.nanos());
        in.setMtime(now.seconds(), now.nanos());
        in.setCtime(now.seconds(), now.nanos());
        in.setCrtime(now.seconds(), now.nanos());
        in.setGeneration(ThreadLocalRandom.current().nextInt() & 0xFFFFFFFFL);
        if (extents) {
            in.setFlags(Inode.EXTENTS_FL);
            ExtentTree.initEmpty(in.iBlock());
        }
        return in;
    }

    /** EMLINK when {@code dir} cannot count one more subdirectory (EXT4_DIR_LINK_MAX(), without dir_nlink). */
    private void requireRoomForSubdir(Dir dir) throws Ext4Exception {
        if (dir.copy.linksCount() >= LINK_MAX && !sb.has(Feature.DIR_NLINK)) {
            throw new Ext4Exception(Errno.EMLINK, "directory inode " + dir.ino + " has " + LINK_MAX + " links");
        }
    }

    private static void incLinks(Inode dir) {
        int n = dir.linksCount();
        dir.setLinksCount(n >= LINK_MAX - 1 || n == 1 ? 1 : n + 1);
    }

    private static void decLinks(Inode dir) {
        int n = dir.linksCount();
        if (n > 2) {
            dir.setLinksCount(n - 1);
        }
    }

    /**
     * link(2) (ext4_link()). An inode with no link left is ENOENT, unless O_TMPFILE made it and it
     * was never linked (the VFS's I_LINKABLE): then this is its first name, and it leaves the
     * orphan list.
     */
    void link(long ino, long dirIno, byte[] name) throws Ext4Exception {
        state.requireWritable();
        checkName(name);
        try (InodeLocks.Held h = locks.lockAll(dirIno, ino)) {
            InodeInfo info = inodes.get(ino);
            Inode target = info.inode().copy();
            requireNotImmutable(ino, target);
            if (target.isDirectory()) {
                throw new Ext4Exception(Errno.EPERM, "hard links to directories are not allowed");
            }
            if (target.linksCount() >= LINK_MAX) {
                throw new Ext4Exception(Errno.EMLINK, "inode " + ino + " has " + LINK_MAX + " links");
            }
            boolean tmpfile = target.linksCount() == 0 && info.linkable();
            if (target.linksCount() == 0 && !tmpfile) {
                throw new Ext4Exception(Errno.ENOENT, "inode " + ino + " was removed");
            }
            Dir dir = new Dir(dirIno);
            if (dir.entries.reader().lookup(name) != 0) {
                throw new Ext4Exception(Errno.EEXIST, "entry exists in directory inode " + dirIno);
            }
            requireMayAdd(dirIno, dir.copy);
            dir.add(name, ino, DirEntry.fileTypeOfMode(target.mode()));
            if (tmpfile) {
                orphans.remove(ino); // as ext4_link() of an inode whose count goes to 1
                target.setDtime(0);
                info.setLinkable(false);
            }
            target.setLinksCount(target.linksCount() + 1);
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            target.setCtime(now.seconds(), now.nanos());
            host.writeInode(ino, target);
            dir.touchAndWrite();
            dentries.put(dirIno, name, ino);
        }
    }

    /**
     * may_delete() and may_linkat(): an immutable or append-only inode (chattr +i, +a) cannot be
     * removed, renamed or linked, nor can entries leave such a directory (EPERM). The VFS checks
     * this for the kernel's ext4; it cannot see the flags of a FUSE inode.
     */
    static void requireNotImmutable(long ino, Inode i) throws Ext4Exception {
        if (i.hasFlag(Inode.IMMUTABLE_FL) || i.hasFlag(Inode.APPEND_FL)) {
            throw new Ext4Exception(Errno.EPERM, "inode " + ino + " is " + (i.hasFlag(Inode.IMMUTABLE_FL) ? "immutable" : "append-only"));
        }
    }

    /**
     * may_create()'s inode_permission(dir, MAY_WRITE): no entry can be added to an immutable
     * directory (EPERM). An append-only one takes new entries; only their removal is refused.
     */
    static void requireMayAdd(long dirIno, Inode dir) throws Ext4Exception {
        if (dir.hasFlag(Inode.IMMUTABLE_FL)) {
            throw new Ext4Exception(Errno.EPERM, "directory inode " + dirIno + " is immutable: no entry can be added");
        }
    }

    /** unlink(2) and rmdir(2). */
    void remove(long dirIno, byte[] name, boolean directory) throws Ext4Exception {
        state.requireWritable();
        Names.check(name);
        while (true) {
            long child = lookup(dirIno, name);
            try (InodeLocks.Held h = locks.lockAll(dirIno, child)) {
                Dir dir = new Dir(dirIno);
                if (dir.entries.reader().lookup(name) != child) {
                    continue; // changed while we waited for the locks
                }
                Inode c = inodes.get(child).inode().copy();
                requireNotImmutable(dirIno, dir.copy);
                requireNotImmutable(child, c);
                if (directory && !c.isDirectory()) {
                    throw new Ext4Exception(Errno.ENOTDIR, "inode " + child + " is not a directory");
                }
                if (!directory && c.isDirectory()) {
                    throw new Ext4Exception(Errno.EISDIR, "inode " + child + " is a directory");
                }
                if (directory && !new Dir(child).entries.isEmpty()) {
                    throw new Ext4Exception(Errno.ENOTEMPTY, "directory inode " + child + " is not empty");
                }
                dir.entries.remove(name);
                dentries.remove(dirIno, name);
                dropLink(child, c, directory);
                if (directory) {
                    decLinks(dir.copy);
                }
                dir.touchAndWrite();
                return;
            }
        }
    }

    /** One name of {@code ino} is gone: count it, and free the inode when none is left. */
    private void dropLink(long ino, Inode c, boolean directory) throws Ext4Exception {
        if (directory) {
            // a removed directory's own entries leave the cache with it (the VFS drops its
            // dentries): its inode number may come back as a directory elsewhere
            dentries.remove(ino, new byte[] {'.'});
            dentries.remove(ino, new byte[] {'.', '.'});
        }
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        c.setCtime(now.seconds(), now.nanos());
        int links = directory ? 0 : c.linksCount() - 1;
        c.setLinksCount(Math.max(0, links));
        if (links > 0) {
            host.writeInode(ino, c);
            return;
        }
        evict.freeInode(ino, c);
    }

    /**
     * rename(2) and renameat2(2) (ext4_rename2()): with RENAME_NOREPLACE a target that exists is
     * EEXIST, found under the locks the rename takes; RENAME_EXCHANGE swaps two names that both
     * exist ({@link #exchange}). RENAME_WHITEOUT (ext4j makes no whiteouts), both together and
     * unknown bits are EINVAL, as do_renameat2() decides before any lookup.
     */
    void rename(long fromDir, byte[] fromName, long toDir, byte[] toName, int flags) throws Ext4Exception {
        boolean noReplace = (flags & Ext4FileSystem.RENAME_NOREPLACE) != 0;
        boolean exchange = (flags & Ext4FileSystem.RENAME_EXCHANGE) != 0;
        if ((flags & ~(Ext4FileSystem.RENAME_NOREPLACE | Ext4FileSystem.RENAME_EXCHANGE)) != 0 || noReplace && exchange) {
            throw new Ext4Exception(Errno.EINVAL, "rename flags 0x" + Integer.toHexString(flags)
                    + ": ext4j takes RENAME_NOREPLACE or RENAME_EXCHANGE, one at a time");
        }
        state.requireWritable();
        checkName(toName);
        if (exchange) {
            checkName(fromName); // it gets the other inode
        }
        if (fromDir == toDir && Arrays.equals(fromName, toName)) {
            lookup(fromDir, fromName);
            if (noReplace) {
                throw new Ext4Exception(Errno.EEXIST, "entry exists in directory inode " + toDir);
            }
            return;
        }
        try (InodeLocks.Locked r = locks.rename(fromDir != toDir)) {
            while (true) {
                long src = lookup(fromDir, fromName);
                long dst = exchange ? lookup(toDir, toName) : find(toDir, toName);
                try (InodeLocks.Held h = locks.lockAll(fromDir, toDir, src, dst)) {
                    Dir from = new Dir(fromDir);
                    Dir to = fromDir == toDir ? from : new Dir(toDir);
                    if (from.entries.reader().lookup(fromName) != src || to.entries.reader().lookup(toName) != dst) {
                        continue;
                    }
                    if (noReplace && dst != 0) {
                        throw new Ext4Exception(Errno.EEXIST, "entry exists in directory inode " + toDir);
                    }
                    if (src == dst) {
                        return; // two names of one inode: rename does nothing
                    }
                    if (exchange) {
                        exchange(from, fromName, src, to, toName, dst);
                    } else {
                        doRename(from, fromName, src, to, toName, dst);
                    }
                    return;
                }
            }
        }
    }

    /**
     * EINVAL when {@code movedDir} is {@code newParent} or above it: moved there, it would be cut
     * off from the root (the VFS's lock_rename() trap). Under the rename lock, which keeps every
     * ".." still.
     */
    private void requireNotAncestor(long movedDir, long newParent) throws Ext4Exception {
        for (long d = newParent; d != Ext4FileSystem.ROOT_INO; d = parentOf(d)) {
            if (d == movedDir) {
                throw new Ext4Exception(Errno.EINVAL, "cannot move directory inode " + movedDir + " into itself");
            }
        }
    }

    /**
     * RENAME_EXCHANGE (ext4_cross_rename()): the two entries swap inodes. A directory that changes
     * parent gets its ".." pointed at the new one; when a directory and a non-directory swap
     * between two parents, one subdirectory's count passes from one parent to the other. Both
     * inodes' ctime and both parents' mtime and ctime move. Both names leave their directories as
     * far as the flags go (may_delete() of each).
     */
    private void exchange(Dir from, byte[] fromName, long src, Dir to, byte[] toName, long dst) throws Ext4Exception {
        boolean cross = from.ino != to.ino;
        boolean srcDir = inodes.get(src).inode().isDirectory();
        boolean dstDir = inodes.get(dst).inode().isDirectory();
        if (cross && srcDir) {
            requireNotAncestor(src, to.ino);
        }
        if (cross && dstDir) {
            requireNotAncestor(dst, from.ino);
        }
        // a directory that changes parent gets a new "..": one ext4j can change, checked first
        Dir srcMoved = cross && srcDir ? new Dir(src) : null;
        Dir dstMoved = cross && dstDir ? new Dir(dst) : null;
        Inode s = srcMoved != null ? srcMoved.copy : inodes.get(src).inode().copy();
        Inode d = dstMoved != null ? dstMoved.copy : inodes.get(dst).inode().copy();
        requireNotImmutable(from.ino, from.copy);
        requireNotImmutable(to.ino, to.copy);
        requireNotImmutable(src, s);
        requireNotImmutable(dst, d);
        boolean countMoves = cross && srcDir != dstDir;
        if (countMoves) {
            requireRoomForSubdir(srcDir ? to : from);
        }
        from.entries.replace(fromName, dst, DirEntry.fileTypeOfMode(d.mode()));
        to.entries.replace(toName, src, DirEntry.fileTypeOfMode(s.mode()));
        dentries.put(from.ino, fromName, dst);
        dentries.put(to.ino, toName, src);
        if (srcMoved != null) {
            srcMoved.entries.setDotDot(to.ino); // an inline directory keeps its parent in i_block: in s
            dentries.put(src, new byte[] {'.', '.'}, to.ino);
        }
        if (dstMoved != null) {
            dstMoved.entries.setDotDot(from.ino);
            dentries.put(dst, new byte[] {'.', '.'}, from.ino);
        }
        if (countMoves) {
            decLinks(srcDir ? from.copy : to.copy);
            incLinks(srcDir ? to.copy : from.copy);
        }
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        s.setCtime(now.seconds(), now.nanos());
        d.setCtime(now.seconds(), now.nanos());
        host.writeInode(src, s);
        host.writeInode(dst, d);
        from.touchAndWrite();
        if (to != from) {
            to.touchAndWrite();
        }
    }

    private void doRename(Dir from, byte[] fromName, long src, Dir to, byte[] toName, long dst) throws Ext4Exception {
        Inode s = inodes.get(src).inode().copy();
        requireNotImmutable(from.ino, from.copy);
        if (dst != 0) {
            requireNotImmutable(to.ino, to.copy); // may_delete() of the replaced name: nor append-only
            requireNotImmutable(dst, inodes.get(dst).inode());
        } else {
            requireMayAdd(to.ino, to.copy);
        }
        requireNotImmutable(src, s);
        boolean srcDir = s.isDirectory();
        if (srcDir && from.ino != to.ino) {
            requireNotAncestor(src, to.ino);
        }
        // a directory moving to another parent gets a new "..": it must be one ext4j can change,
        // which is checked before anything changes
        Dir moved = srcDir && from.ino != to.ino ? new Dir(src) : null;
        Inode d = null;
        if (dst != 0) {
            d = inodes.get(dst).inode().copy();
            if (d.isDirectory() && !srcDir) {
                throw new Ext4Exception(Errno.EISDIR, "cannot replace directory inode " + dst + " by a non-directory");
            }
            if (!d.isDirectory() && srcDir) {
                throw new Ext4Exception(Errno.ENOTDIR, "cannot replace non-directory inode " + dst + " by a directory");
            }
            if (d.isDirectory() && !new Dir(dst).entries.isEmpty()) {
                throw new Ext4Exception(Errno.ENOTEMPTY, "directory inode " + dst + " is not empty");
            }
            to.entries.replace(toName, src, DirEntry.fileTypeOfMode(s.mode()));
        } else {
            if (srcDir && from.ino != to.ino) {
                requireRoomForSubdir(to);
            }
            to.add(toName, src, DirEntry.fileTypeOfMode(s.mode()));
        }
        from.entries.remove(fromName);
        dentries.remove(from.ino, fromName);
        dentries.put(to.ino, toName, src);
        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
        s.setCtime(now.seconds(), now.nanos());
        if (moved != null) {
            moved.entries.setDotDot(to.ino);
            dentries.put(src, new byte[] {'.', '.'}, to.ino);
            s = moved.copy; // an inline directory keeps its parent in i_block
            s.setCtime(now.seconds(), now.nanos());
        }
        if (srcDir) {
            // as ext4_rename(): the old parent loses src's "..", the new one gains it unless src
            // replaces a directory there, whose ".." goes at the same time (from == to shares one copy)
            decLinks(from.copy);
            if (d == null) {
                incLinks(to.copy);
            }
        }
        host.writeInode(src, s);
        if (d != null) {
            dropLink(dst, d, d.isDirectory());
        }
        from.touchAndWrite();
        if (to != from) {
            to.touchAndWrite();
        }
    }

    // ---- lookups (namei.c ext4_lookup(), dir.c ext4_readdir()) ----

    /** Inode of {@code name} in directory {@code dirIno}; ENOENT when absent. */
    long lookup(long dirIno, byte[] name) throws Ext4Exception {
        long ino = find(dirIno, name);
        if (ino == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no entry in directory inode " + dirIno);
        }
        return ino;
    }

    /**
     * {@link #lookup}, with 0 for a name that is not there: the kernel looks up every name before
     * it creates it, and an exception per new name costs more than the search.
     */
    private long find(long dirIno, byte[] name) throws Ext4Exception {
        Names.check(name);
        long cached = dentries.get(dirIno, name);
        if (cached != 0) {
            return cached;
        }
        try (InodeLocks.Locked l = locks.read(dirIno)) {
            long ino = directory(dirIno).lookup(name);
            if (ino == 0) {
                return 0;
            }
            inodes.linked(ino, dirIno);
            dentries.put(dirIno, name, ino); // under the lock, so an unlink cannot slip in between
            return ino;
        }
    }

    /** Walks an absolute path ("/a/b", bytes, '/'-separated) from the root. */
    long resolve(byte[] path) throws Ext4Exception {
        long ino = resolveOrZero(path);
        if (ino == 0) {
            throw new Ext4Exception(Errno.ENOENT, "no such path");
        }
        return ino;
    }

    /** {@link #resolve}, with 0 when a name on the path is not there (see {@link #find}). */
    long resolveOrZero(byte[] path) throws Ext4Exception {
        return resolveOrZero(path, null);
    }

    /** {@link #resolveOrZero(byte[])}, calling {@code search} (when not null) on each directory before a name is looked up in it. */
    long resolveOrZero(byte[] path, Ext4FileSystem.SearchCheck search) throws Ext4Exception {
        long ino = Ext4FileSystem.ROOT_INO;
        int i = 0;
        while (i < path.length) {
            while (i < path.length && path[i] == '/') {
                i++;
            }
            int start = i;
            while (i < path.length && path[i] != '/') {
                i++;
            }
            if (i > start) {
                if (!inodes.get(ino).inode().isDirectory()) {
                    throw new Ext4Exception(Errno.ENOTDIR, "inode " + ino + " is not a directory");
                }
                if (search != null) {
                    search.check(ino);
                }
                ino = find(ino, Arrays.copyOfRange(path, start, i));
                if (ino == 0) {
                    return 0;
                }
            }
        }
        return ino;
    }

    void readdir(long dirIno, long position, DirSink sink) throws Ext4Exception {
        try (InodeLocks.Locked l = locks.read(dirIno)) {
            directory(dirIno).readdir(position, sink);
        }
    }

    /**
     * The ".." of a directory, read without its lock: only cross-directory renames change it, and
     * they hold the rename lock (see {@link InodeLocks}).
     */
    long parentOf(long dirIno) throws Ext4Exception {
        long parent = directory(dirIno).lookup(new byte[] {'.', '.'});
        if (parent == 0) {
            throw Ext4Exception.corrupted("directory inode " + dirIno + " has no \"..\" entry");
        }
        return parent;
    }

    private DirEntries directory(long dirIno) throws Ext4Exception {
        InodeInfo info = inodes.get(dirIno);
        Inode i = info.inode();
        if (!i.isDirectory()) {
            throw new Ext4Exception(Errno.ENOTDIR, "inode " + dirIno + " is not a directory");
        }
        if (i.linksCount() == 0) {
            // removed while someone still held its number (the VFS's IS_DEADDIR): nothing is in it
            throw new Ext4Exception(Errno.ENOENT, "directory inode " + dirIno + " was removed");
        }
        if (i.hasFlag(Inode.ENCRYPT_FL)) {
            throw new Ext4Exception(Errno.ENOKEY, "directory inode " + dirIno + " is encrypted");
        }
        if (i.hasFlag(Inode.INLINE_DATA_FL)) {
            return new InlineDirectory(dirIno, i.iBlock(), fileRead.inlineXattr(info), host.dirFormat());
        }
        boolean indexed = i.hasFlag(Inode.INDEX_FL) && !i.hasFlag(Inode.CASEFOLD_FL);
        return new BlockDirectory(cache, dirIno, info.map(), inodes.isize(i), indexed, host.dirFormat(), info.csumSeed());
    }
}
