package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.resize.OnlineResize;

/**
 * The ioctls (the kernel's ioctl.c): inode flags (chattr), EXT4_IOC_MIGRATE, online resize and
 * EXT4_IOC_GROUP_ADD, each with its permission and capability checks, so a FUSE adapter only
 * decodes the bytes.
 */
final class Ioctl {
    /** What the ioctls need from the mounted filesystem. */
    interface Host {
        /** sb_start_write(): passes the write gate before any inode lock is taken. */
        WriteGate.Entered enterGate() throws Ext4Exception;

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;

        /** What stat(2) shows of {@code ino}, for the permission checks. */
        FileAttributes attributes(long ino) throws Ext4Exception;

        /** Converts a block-mapped inode to an extent tree ({@link Migrate}); the caller is inside the write gate. */
        void migrate(long ino) throws Ext4Exception;
    }

    private final SuperState state;
    private final InodeTable inodes;
    private final InodeLocks locks;
    /** Online grow; null on a read-only mount. */
    private final OnlineResize resizer;
    private final Host host;

    Ioctl(SuperState state, InodeTable inodes, InodeLocks locks, OnlineResize resizer, Host host) {
        this.state = state;
        this.inodes = inodes;
        this.locks = locks;
        this.resizer = resizer;
        this.host = host;
    }

    /** ext4_resize_begin(): a writable mount, and CAP_SYS_RESOURCE (root here). */
    private void requireResource() throws Ext4Exception {
        state.requireWritable();
        Permissions.checkResize(Ext4FileSystem.ROOT_INO);
    }

    /**
     * EXT4_IOC_GETFLAGS: the inode flags a user may see (EXT4_FL_USER_VISIBLE); the FS_*_FL bits
     * of chattr(1) are the same numbers.
     */
    int getFlags(long ino) throws Ext4Exception {
        return inodes.get(ino).inode().flags() & InodeFlags.USER_VISIBLE;
    }

    /**
     * EXT4_IOC_SETFLAGS (ext4_ioctl_setflags()): changes the user-modifiable flags, keeps the
     * others. Only the owner or root may (EPERM); immutable and append-only only root (EPERM).
     * Setting EXTENTS_FL migrates the file as {@link #migrate} does. A request without it leaves
     * it alone: the VFS masks flags to FS_FL_USER_MODIFIABLE, which lacks it, before a FUSE
     * server sees them (and ext4j has no extent-to-indirect migration).
     */
    void setFlags(long ino, int flags) throws Ext4Exception {
        state.requireWritable();
        FileAttributes current = host.attributes(ino);
        int old = current.flags();
        Permissions.checkSetFlags(current, flags);
        if ((flags & Inode.EXTENTS_FL) != 0 && (old & Inode.EXTENTS_FL) == 0) {
            migrate(ino);
        }
        try (WriteGate.Entered g = host.enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            Inode copy = inodes.get(ino).inode().copy();
            int keep = copy.flags() & ~InodeFlags.USER_MODIFIABLE;
            int wanted = (flags & InodeFlags.USER_MODIFIABLE & ~Inode.EXTENTS_FL) | (copy.flags() & Inode.EXTENTS_FL);
            if ((keep | wanted) == copy.flags()) {
                return;
            }
            copy.setFlags(keep | wanted);
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            copy.setCtime(now.seconds(), now.nanos());
            host.writeInode(ino, copy);
        }
    }

    /**
     * EXT4_IOC_MIGRATE (ext4_ext_migrate()): converts a block-mapped file or directory to an
     * extent tree; see {@link Migrate}. EINVAL, as the kernel, without the extents feature, for
     * a file that is extent-mapped already or has inline data; EAGAIN when the file's blocks
     * changed meanwhile (nothing is changed then).
     */
    void migrate(long ino) throws Ext4Exception {
        state.requireWritable();
        Permissions.checkMigrate(host.attributes(ino));
        try (WriteGate.Entered g = host.enterGate()) {
            host.migrate(ino);
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
        try (WriteGate.Entered g = host.enterGate()) {
            resizer.grow(newBlocksCount);
        }
    }

    /**
     * Adds one block group whose bitmaps and inode table a resizer placed (EXT4_IOC_GROUP_ADD);
     * see {@link OnlineResize#addGroup} for the checks.
     */
    void addGroup(OnlineResize.NewGroup group) throws Ext4Exception {
        requireResource();
        try (WriteGate.Entered g = host.enterGate()) {
            resizer.addGroup(group);
        }
    }
}
