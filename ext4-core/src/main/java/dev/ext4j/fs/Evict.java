package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.format.Inode;
import java.lang.System.Logger.Level;

/**
 * The end of an inode's life (the kernel's ext4_evict_inode() and the orphan side of
 * ext4_orphan_cleanup()): open file handles and the kernel's lookups are counted, and an inode
 * whose last name went is freed when the last of them goes (its last close, or the FORGET of its
 * last lookup), or at once when nothing references it.
 */
final class Evict {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /** What freeing an inode needs from the mounted filesystem. */
    interface Host {
        /** sb_start_write(): passes the write gate before any inode lock is taken. */
        WriteGate.Entered enterGate() throws Ext4Exception;

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;
    }

    private final InodeTable inodes;
    private final InodeLocks locks;
    private final Orphans orphans;
    private final SuperState state;
    /** Null on a read-only mount (which frees nothing). */
    private final Allocator allocator;
    private final FileWrite fileWrite;
    private final Xattrs xattrs;
    private final int blockSize;
    private final Host host;

    Evict(InodeTable inodes, InodeLocks locks, Orphans orphans, SuperState state, Allocator allocator, FileWrite fileWrite,
          Xattrs xattrs, int blockSize, Host host) {
        this.inodes = inodes;
        this.locks = locks;
        this.orphans = orphans;
        this.state = state;
        this.allocator = allocator;
        this.fileWrite = fileWrite;
        this.xattrs = xattrs;
        this.blockSize = blockSize;
        this.host = host;
    }

    /** Whether a file handle or a kernel lookup references {@code ino}. */
    boolean referenced(long ino) {
        return inodes.referenced(ino);
    }

    /** An open file handle was created for {@code ino}. */
    void open(long ino) throws Ext4Exception {
        inodes.open(ino);
    }

    /** The last use of an open file handle ended: an unreferenced inode whose last name went is freed now. */
    void release(long ino) throws Ext4Exception {
        if (inodes.release(ino) && !state.readOnly()) {
            evictIfUnlinked(ino);
        }
    }

    /** A lookup reference the kernel held on {@code ino} (each LOOKUP, CREATE, MKDIR... reply). */
    void remember(long ino) {
        inodes.remember(ino);
    }

    /** The kernel forgot {@code n} lookups (FORGET): an unreferenced inode whose last name went is freed now. */
    void forget(long ino, long n) throws Ext4Exception {
        if (inodes.forget(ino, n) && !state.readOnly()) {
            evictIfUnlinked(ino);
        }
    }

    /** ext4_evict_inode() after the last reference: an inode with no name left is freed. */
    private void evictIfUnlinked(long ino) throws Ext4Exception {
        try (WriteGate.Entered g = host.enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode in = info.inode();
            if (in.linksCount() == 0 && in.mode() != 0 && (in.dtime() == 0 || orphans.contains(ino))) {
                freeInode(ino, info.inode().copy());
            }
        }
    }

    /**
     * Frees an inode whose last name is gone (ext4_evict_inode()): its blocks and xattr block, then
     * the inode itself, unless a file handle or a kernel lookup still references it. The caller
     * holds its lock.
     */
    void freeInode(long ino, Inode copy) throws Ext4Exception {
        copy.setLinksCount(0);
        if (inodes.referenced(ino)) {
            orphans.add(ino); // a crash before the last reference goes leaves it for the next mount
            host.writeInode(ino, copy); // freed when the last reference goes
            return;
        }
        InodeInfo info = inodes.get(ino);
        info.setLinkable(false); // the number may come back as another inode, which no O_TMPFILE made
        boolean dir = copy.isDirectory();
        fileWrite.releaseAll(info, copy);
        if (copy.fileAcl() != 0) {
            xattrs.releaseBlock(copy.fileAcl());
            copy.setFileAcl(0);
            copy.setBlocks512(0, blockSize);
        }
        orphans.remove(ino);
        copy.setDtime(Ext4FileSystem.Time.now().seconds());
        copy.setSize(0);
        host.writeInode(ino, copy);
        allocator.freeInode(ino, dir);
    }

    /**
     * What a crash interrupted for one orphan finished (a delete, or a truncate), then {@code then} under the orphan's locks and in its handle, so
     * that it commits with the orphan's finish (the orphan file clears its slot).
     */
    void finishOrphan(long ino, Retry.Step then) throws Ext4Exception {
        try (InodeLocks.Held h = locks.lockAll(ino)) {
            Inode copy = inodes.get(ino).inode().copy();
            if (copy.mode() == 0) {
                LOG.log(Level.ERROR, "orphan list: inode " + ino + " is not in use; dropped from the list");
                orphans.remove(ino);
            } else if (copy.linksCount() == 0) {
                freeInode(ino, copy);
            } else {
                fileWrite.finishTruncate(ino);
            }
            then.run();
        }
    }

    /**
     * Unmount: references still held are dropped now, and an unlinked inode is freed as its last
     * release would have freed it. After errors=remount-ro, a journal abort or a remount read-only
     * nothing more is changed; the orphan list keeps them for the next mount.
     */
    void closeAll() throws Ext4Exception {
        for (long ino : inodes.closeAll()) {
            if (state.errorReadOnly() == null && !state.journalAborted() && !state.readOnly()) {
                evictIfUnlinked(ino);
            }
        }
    }

}
