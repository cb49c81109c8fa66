package dev.ext4j.fs;

import dev.ext4j.Ext4Exception;
import dev.ext4j.LockOrder;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import java.lang.System.Logger.Level;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The orphan list (fs/ext4/orphan.c, the s_last_orphan chain): inodes whose last name went while a
 * file handle still has them open, and files in the middle of a truncate. s_last_orphan is the
 * head and each orphan's i_dtime holds the next, so after a crash the next mount (or e2fsck)
 * finishes what was interrupted.
 *
 * <p>The chain is mirrored in memory as the kernel's s_orphan list: this object knows which inodes
 * are on it, and each in-core inode holds its own link ({@link InodeInfo#orphanNext()}; an orphan
 * stays pinned in the inode table while it is on the list). {@link InodeTable#write} stamps an
 * orphan's i_dtime from its link under this object's monitor, so a thread writing its copy of an orphan inode never
 * undoes the link change that removing another orphan made. The monitor is a leaf in the lock
 * order: taken after inode locks, before block locks and the superblock's monitor.
 */
final class Orphans {
    private static final System.Logger LOG = System.getLogger("ext4j");

    /** What the cleanup at mount needs from the mounted filesystem. */
    interface Host {
        /** Finishes what a crash interrupted for one orphan: its delete, or its truncate ({@link Evict#finishOrphan}). */
        void finishOrphan(long ino) throws Ext4Exception;
    }

    private final Superblock sb;
    private final SuperState state;
    private final InodeTable inodes;
    private final Host host;
    /** The inodes on the list; their links are in their in-core inodes. */
    private final Set<Long> members = ConcurrentHashMap.newKeySet();

    Orphans(Superblock sb, SuperState state, InodeTable inodes, Host host) {
        this.sb = sb;
        this.state = state;
        this.inodes = inodes;
        this.host = host;
    }

    boolean contains(long ino) {
        return members.contains(ino);
    }

    /** How many inodes are on the list. */
    int size() {
        return members.size();
    }

    /** The i_dtime an orphan must carry: the next orphan's number. */
    private long nextOf(long ino) {
        InodeInfo info = inodes.pinned(ino);
        long next = info != null ? info.orphanNext() : InodeInfo.NOT_ORPHAN;
        return next == InodeInfo.NOT_ORPHAN ? 0 : next;
    }

    /** Links {@code ino} in before {@code following}. */
    private void link(long ino, long following) throws Ext4Exception {
        inodes.linkOrphan(ino, following);
        members.add(ino);
    }

    /**
     * Puts {@code ino} at the head of the list; the caller holds its lock and writes the inode next
     * (with its link count), which stamps the chain link.
     */
    synchronized void add(long ino) throws Ext4Exception {
        LockOrder.monitor(LockOrder.Level.ORPHANS, -1, this); // a synchronized method: checked once held
        if (members.contains(ino)) {
            return;
        }
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            link(ino, sb.lastOrphan());
            sb.setLastOrphan(ino);
            state.writeSuperblock();
        }
    }

    /**
     * Takes {@code ino} off the list: the head moves on, or the previous orphan's i_dtime skips it.
     * The caller holds the lock of {@code ino} and writes it afterwards with its final i_dtime.
     */
    synchronized void remove(long ino) throws Ext4Exception {
        LockOrder.monitor(LockOrder.Level.ORPHANS, -1, this); // a synchronized method: checked once held
        if (!members.remove(ino)) {
            return;
        }
        long after = nextOf(ino);
        inodes.unlinkOrphan(ino);
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            if (sb.lastOrphan() == ino) {
                sb.setLastOrphan(after);
                state.writeSuperblock();
                return;
            }
        }
        for (long prev : members) {
            if (nextOf(prev) == ino) {
                inodes.linkOrphan(prev, after);
                // only the previous orphan's i_dtime changes, as ext4_orphan_del() patches the raw
                // inode: another thread may hold that inode's lock and be changing the rest of it
                // (a whole copy written here could undo a truncate's new map); its own later write
                // stamps the same link (see the class comment)
                inodes.writeOrphanLink(prev, after);
                return;
            }
        }
    }

    /** Writes {@code changed} with its chain link when it is an orphan; else as it is. */
    InodeInfo stampAndWrite(long ino, Inode changed, InodeTable.InodeWriter writer) throws Ext4Exception {
        if (!members.contains(ino)) {
            return writer.write(ino, changed);
        }
        synchronized (LockOrder.monitor(LockOrder.Level.ORPHANS, -1, this)) {
            changed.setDtime(nextOf(ino));
            return writer.write(ino, changed);
        }
    }

    /**
     * ext4_orphan_cleanup() at a read-write mount: every inode on the list is deleted when it has no
     * link left, or else cut back to its size (a truncate that a crash interrupted). A chain that
     * loops or leaves the inode table is cut where it goes wrong, with a log line.
     */
    void cleanup() throws Ext4Exception {
        List<Long> chain = new ArrayList<>();
        Set<Long> seen = new HashSet<>();
        long ino = sb.lastOrphan();
        while (ino != 0) {
            if (ino < sb.firstIno() || ino > sb.inodesCount() || !seen.add(ino)) {
                LOG.log(Level.ERROR, "orphan list: inode " + ino + " cannot be on it (bad number or a loop); the rest of the list is dropped");
                break;
            }
            long following = inodes.get(ino).inode().dtime();
            chain.add(ino);
            ino = following;
        }
        for (int i = 0; i < chain.size(); i++) {
            link(chain.get(i), i + 1 < chain.size() ? chain.get(i + 1) : 0); // a cut chain ends at the cut
        }
        synchronized (LockOrder.monitor(LockOrder.Level.SUPERBLOCK, -1, sb)) {
            sb.setLastOrphan(chain.isEmpty() ? 0 : chain.get(0));
            state.writeSuperblock();
        }
        for (long o : chain) {
            host.finishOrphan(o);
        }
        if (!chain.isEmpty()) {
            LOG.log(Level.INFO, "orphan list: finished " + chain.size() + " interrupted delete(s) or truncate(s)");
        }
    }
}
