package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.journal.Transactions;
import dev.ext4j.resize.OnlineResize;

/**
 * The ioctls (the kernel's ioctl.c): inode flags (chattr), EXT4_IOC_MIGRATE, online resize and
 * EXT4_IOC_GROUP_ADD, each with its permission and capability checks, so a FUSE adapter only
 * decodes the bytes.
 */
final class Ioctl {
    private final SuperInfo fs;
    /** Online grow; null on a read-only mount. */
    private final OnlineResize resizer;

    Ioctl(SuperInfo fs) {
        this.fs = fs;
        this.resizer = fs.readOnly ? null : new OnlineResize(fs.device, fs.sb, fs.cache, fs.groups, fs.allocator, new ResizeHost());
    }

    /** ext4_resize_begin(): a writable mount, and CAP_SYS_RESOURCE (root here). */
    private void requireResource() throws Ext4Exception {
        fs.requireWritable();
        Permissions.checkResize(Ext4FileSystem.ROOT_INO);
    }

    /**
     * EXT4_IOC_GETFLAGS: the inode flags a user may see (EXT4_FL_USER_VISIBLE); the FS_*_FL bits
     * of chattr(1) are the same numbers.
     */
    int getFlags(long ino) throws Ext4Exception {
        return fs.inode(ino).inode().flags() & InodeFlags.USER_VISIBLE;
    }

    /**
     * EXT4_IOC_SETFLAGS (ext4_ioctl_setflags()): changes the user-modifiable flags, keeps the
     * others. Only the owner or root may (EPERM); immutable and append-only only root (EPERM).
     * Setting EXTENTS_FL migrates the file as {@link #migrate} does. A request without it leaves
     * it alone: the VFS masks flags to FS_FL_USER_MODIFIABLE, which lacks it, before a FUSE
     * server sees them (and ext4j has no extent-to-indirect migration).
     */
    void setFlags(long ino, int flags) throws Ext4Exception {
        fs.requireWritable();
        FileAttributes current = fs.attributes(ino);
        int old = current.flags();
        Permissions.checkSetFlags(current, flags);
        if ((flags & Inode.EXTENTS_FL) != 0 && (old & Inode.EXTENTS_FL) == 0) {
            migrate(ino);
        }
        try (WriteGate.Entered g = fs.enterGate(); InodeLocks.Held h = fs.locks.lockAll(ino)) {
            Inode copy = fs.inode(ino).inode().copy();
            int keep = copy.flags() & ~InodeFlags.USER_MODIFIABLE;
            int wanted = (flags & InodeFlags.USER_MODIFIABLE & ~Inode.EXTENTS_FL) | (copy.flags() & Inode.EXTENTS_FL);
            if ((keep | wanted) == copy.flags()) {
                return;
            }
            copy.setFlags(keep | wanted);
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            copy.setCtime(now.seconds(), now.nanos());
            fs.writeInode(ino, copy);
        }
    }

    /**
     * EXT4_IOC_MIGRATE (ext4_ext_migrate()): converts a block-mapped file or directory to an
     * extent tree; see {@link Migrate}. EINVAL, as the kernel, without the extents feature, for
     * a file that is extent-mapped already or has inline data; EAGAIN when the file's blocks
     * changed meanwhile (nothing is changed then).
     */
    void migrate(long ino) throws Ext4Exception {
        fs.requireWritable();
        Permissions.checkMigrate(fs.attributes(ino));
        try (WriteGate.Entered g = fs.enterGate()) {
            new Migrate(fs).run(ino);
        }
    }

    /**
     * Grows the filesystem online to {@code newBlocksCount} blocks (EXT4_IOC_RESIZE_FS); see
     * {@link OnlineResize} for the refusals and the locking. A last group too small to be useful
     * is left out, as resize2fs does: the superblock tells the size reached.
     */
    void resize(long newBlocksCount) throws Ext4Exception {
        requireResource();
        // no handle here: the resize starts one per step, sized to what the step dirties
        try (WriteGate.Entered g = fs.enterGate()) {
            resizer.grow(newBlocksCount);
        }
    }

    /**
     * Adds one block group whose bitmaps and inode table a resizer placed (EXT4_IOC_GROUP_ADD);
     * see {@link OnlineResize#addGroup} for the checks.
     */
    void addGroup(OnlineResize.NewGroup group) throws Ext4Exception {
        requireResource();
        try (WriteGate.Entered g = fs.enterGate()) {
            resizer.addGroup(group);
        }
    }

    /** What {@link OnlineResize} needs of this mount. */
    private final class ResizeHost implements OnlineResize.Host {
        @Override
        public Inode readInode(long ino) throws Ext4Exception {
            return fs.inode(ino).inode().copy();
        }

        @Override
        public void writeInode(long ino, Inode changed) throws Ext4Exception {
            fs.writeInode(ino, changed);
        }

        @Override
        public void writeSuperblock() throws Ext4Exception {
            fs.writeSuperblock();
        }

        @Override
        public Transactions.Handle startHandle(int credits) {
            return fs.tx.start(credits);
        }

        @Override
        public int maxCredits() {
            return fs.tx.maxCredits();
        }

        @Override
        public void geometryChanged() {
            fs.geometryChanged();
        }
    }
}
