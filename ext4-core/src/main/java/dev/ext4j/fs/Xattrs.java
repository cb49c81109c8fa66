package dev.ext4j.fs;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.alloc.Allocator;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.format.XattrEntry;
import dev.ext4j.io.BufferCache;
import dev.ext4j.xattr.Acl;
import dev.ext4j.xattr.Xattr;
import dev.ext4j.xattr.XattrNames;
import dev.ext4j.xattr.XattrReader;
import dev.ext4j.xattr.XattrWriter;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Extended attributes of an inode (the kernel's xattr.c and acl.c glue): read from the inode body,
 * the xattr block and EA inodes; set and removed in the body first, then in the block, which is
 * allocated, shared (by reference count) and freed here. The on-disk codecs live in the
 * {@code xattr} package.
 */
final class Xattrs {
    /** What attribute changes need from the mounted filesystem. */
    interface Host {
        /** sb_start_write(): passes the write gate before any inode lock is taken. */
        WriteGate.Entered enterGate() throws Ext4Exception;

        /** Stamps and writes a changed inode; the caller holds its lock. */
        InodeInfo writeInode(long ino, Inode changed) throws Ext4Exception;

        /** A block account for one operation on {@code ino}, for a new xattr block. */
        BlockAccount account(long ino, Inode inode);
    }

    private final Superblock sb;
    private final SuperState state;
    private final BufferCache cache;
    private final InodeTable inodes;
    private final InodeLocks locks;
    /** Null on a read-only mount. */
    private final Allocator allocator;
    private final FileRead fileRead;
    private final Host host;
    private final boolean metadataCsum;
    private final int csumSeed;
    private final int bs;

    Xattrs(Superblock sb, SuperState state, BufferCache cache, InodeTable inodes, InodeLocks locks, Allocator allocator, FileRead fileRead, Host host) {
        this.sb = sb;
        this.state = state;
        this.cache = cache;
        this.inodes = inodes;
        this.locks = locks;
        this.allocator = allocator;
        this.fileRead = fileRead;
        this.host = host;
        this.metadataCsum = sb.has(Feature.METADATA_CSUM);
        this.csumSeed = metadataCsum ? sb.checksumSeed() : 0;
        this.bs = sb.blockSize();
    }

    /** setxattr(2): XATTR_CREATE / XATTR_REPLACE in {@code flags}; ACLs arrive in the VFS format. */
    void set(long ino, String name, byte[] value, int flags) throws Ext4Exception {
        change(ino, name, value, flags);
    }

    void remove(long ino, String name) throws Ext4Exception {
        change(ino, name, null, 0);
    }

    private boolean hasXattr(Inode inode, long ino, Xattr key) throws Ext4Exception {
        return attributes(inode, ino).stream().anyMatch(x -> x.nameIndex() == key.nameIndex() && Arrays.equals(x.suffix(), key.suffix()));
    }

    /** The attributes of {@code inode} (a version of {@code ino}): its body's, then its block's. */
    private List<Xattr> attributes(Inode inode, long ino) throws Ext4Exception {
        List<Xattr> all = new ArrayList<>(XattrReader.readIbody(inode, ino, eaInodeReader()));
        if (inode.fileAcl() != 0) {
            all.addAll(XattrReader.readBlock(cache, inode.fileAcl(), ino, metadataCsum, csumSeed, eaInodeReader()));
        }
        return all;
    }

    /** The default ACL (on-disk format) among {@code attrs}, or null. */
    private static byte[] defaultAcl(List<Xattr> attrs) {
        byte[] acl = null;
        for (Xattr x : attrs) {
            if (x.nameIndex() == XattrNames.POSIX_ACL_DEFAULT) {
                acl = x.value();
            }
        }
        return acl;
    }

    /** Sets ({@code value != null}) or removes one attribute: inode body first, then the xattr block. */
    private void change(long ino, String name, byte[] value, int flags) throws Ext4Exception {
        state.requireWritable();
        Xattr key = XattrNames.split(name);
        if (key == null || key.nameIndex() == XattrNames.SYSTEM) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unsupported xattr namespace in \"" + name + "\"");
        }
        if (key.suffix().length > 255) {
            throw new Ext4Exception(Errno.ERANGE, "xattr name of " + key.suffix().length + " bytes (max 255)");
        }
        byte[] disk = value;
        if (value != null && (key.nameIndex() == XattrNames.POSIX_ACL_ACCESS || key.nameIndex() == XattrNames.POSIX_ACL_DEFAULT)) {
            disk = Acl.xattrToDisk(value);
        }
        try (WriteGate.Entered g = host.enterGate(); InodeLocks.Held h = locks.lockAll(ino)) {
            InodeInfo info = inodes.get(ino);
            Inode copy = info.inode().copy();
            Namei.requireNotImmutable(ino, copy); // xattr_permission(): no MAY_WRITE on immutable or append-only
            if (value != null && key.nameIndex() == XattrNames.POSIX_ACL_DEFAULT && !copy.isDirectory()) {
                throw new Ext4Exception(Errno.EACCES, "a default ACL needs a directory");
            }
            if (value != null && key.nameIndex() == XattrNames.POSIX_ACL_ACCESS) {
                // ext4_set_acl(): the ACL sets the permission bits, and one that says no more than
                // them is not stored at all
                copy.setMode((copy.mode() & ~0777) | Acl.permissionBits(value));
                if (Acl.equivalentToMode(value)) {
                    disk = null;
                    flags = 0;
                    if (!hasXattr(copy, ino, key)) {
                        Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
                        copy.setCtime(now.seconds(), now.nanos());
                        host.writeInode(ino, copy);
                        return;
                    }
                }
            }
            store(ino, copy, key, disk, flags);
            Ext4FileSystem.Time now = Ext4FileSystem.Time.now();
            copy.setCtime(now.seconds(), now.nanos());
            host.writeInode(ino, copy);
        }
    }


    /**
     * Sets ({@code disk != null}) or removes one attribute (value in the on-disk format) in
     * {@code copy}: inode body first, then the xattr block, which is allocated, rewritten or
     * released as needed. The caller holds the inode's lock (or has the only reference to a new
     * inode) and writes {@code copy} afterwards.
     */
    private void store(long ino, Inode copy, Xattr key, byte[] disk, int flags) throws Ext4Exception {
        List<Xattr> body = XattrReader.readIbody(copy, ino, eaInodeReader());
        long oldBlock = copy.fileAcl();
        List<Xattr> inBlock = oldBlock == 0 ? List.of()
                : XattrReader.readBlock(cache, oldBlock, ino, metadataCsum, csumSeed, eaInodeReader());
        int room = copy.rawSize() > Inode.GOOD_OLD_SIZE ? copy.rawSize() - Inode.GOOD_OLD_SIZE - copy.extraIsize() : 0;
        XattrWriter.Layout layout = XattrWriter.change(body, inBlock, key, disk, flags, room, bs);
        XattrWriter.writeIbody(copy, layout.ibody());
        long sectors = copy.blocks512(sb.has(Feature.HUGE_FILE), bs);
        if (!layout.block().equals(inBlock) || layout.block().isEmpty() != (oldBlock == 0)) {
            long newBlock = 0;
            if (!layout.block().isEmpty()) {
                boolean shared = oldBlock != 0 && XattrEntry.refcount(cache.get(oldBlock)) > 1;
                // ext4_new_meta_blocks() without EXT4_MB_USE_RESERVED: never the blocks promised to
                // delayed writes or the last 2%, and root's reserve only for root
                newBlock = oldBlock != 0 && !shared ? oldBlock : host.account(ino, copy).allocateJournaled(0, 1).start();
                long nb = newBlock;
                BufferCache.Mutator fill = b -> {
                    XattrWriter.writeBlock(b, layout.block(), bs); // leaves h_checksum zero
                    if (metadataCsum) {
                        b.putInt(XattrEntry.H_CHECKSUM, XattrEntry.computeBlockChecksum(b, csumSeed, nb, bs));
                    }
                };
                if (newBlock == oldBlock) {
                    cache.update(newBlock, fill);
                } else {
                    cache.create(newBlock, fill);
                }
            }
            if (oldBlock != 0 && oldBlock != newBlock) {
                releaseBlock(oldBlock);
                sectors -= bs / 512;
            }
            if (newBlock != 0 && newBlock != oldBlock) {
                sectors += bs / 512;
            }
            copy.setFileAcl(newBlock);
            copy.setBlocks512(Math.max(0, sectors), bs);
        }
    }

    /**
     * ext4_init_acl(): a new inode in {@code dirIno} (whose lock the caller holds) takes the
     * directory's default ACL: its access ACL and permission bits from it, masked by the create
     * mode already in {@code child}, and a new directory the default ACL itself. Nothing without
     * a default ACL. The caller writes {@code child}.
     */
    void inheritAcls(long ino, Inode child, long dirIno, Inode dir) throws Ext4Exception {
        byte[] defaultAcl = defaultAcl(attributes(dir, dirIno));
        if (defaultAcl == null || child.isSymlink()) {
            return;
        }
        if (child.isDirectory()) {
            store(ino, child, XattrNames.split("system.posix_acl_default"), defaultAcl, 0);
        }
        Acl.Inherited access = Acl.createMasq(Acl.diskToXattr(defaultAcl, dirIno), child.mode());
        child.setMode(access.mode());
        if (access.access() != null) {
            store(ino, child, XattrNames.split("system.posix_acl_access"), Acl.xattrToDisk(access.access()), 0);
        }
    }

    /**
     * ext4_setattr()'s posix_acl_chmod(): after a chmod the access ACL of the inode (whose lock
     * the caller holds) follows the new permission bits already in {@code copy}. The caller
     * writes {@code copy}.
     */
    void chmodAcl(long ino, Inode copy) throws Ext4Exception {
        Xattr key = XattrNames.split(XattrNames.ACL_ACCESS);
        for (Xattr acl : attributes(copy, ino)) {
            if (acl.nameIndex() == key.nameIndex()) {
                store(ino, copy, key, Acl.xattrToDisk(Acl.chmod(Acl.diskToXattr(acl.value(), ino), copy.mode())), 0);
                return;
            }
        }
    }

    /** Drops one reference to a shared xattr block, freeing it with the last. */
    void releaseBlock(long block) throws Ext4Exception {
        ByteBuffer b = cache.get(block);
        long refs = XattrEntry.refcount(b);
        if (refs <= 1) {
            allocator.freeBlocks(block, 1);
            return;
        }
        cache.update(block, w -> {
            w.putInt(4, (int) (refs - 1));
            if (metadataCsum) {
                w.putInt(XattrEntry.H_CHECKSUM, XattrEntry.computeBlockChecksum(w, csumSeed, block, bs));
            }
        });
    }

    /**
     * Every attribute of {@code ino}. With an xattr block, under the inode's read lock (the
     * kernel's xattr_sem): a change that moves the attributes to another block frees the old one
     * under the write lock, so a reader never follows i_file_acl into a block that was freed and
     * reused meanwhile.
     */
    private List<Xattr> all(long ino) throws Ext4Exception {
        Inode now = inodes.get(ino).inode();
        if (now.fileAcl() == 0) {
            // no block to go stale: the written version of the inode holds them all
            return XattrReader.readIbody(now, ino, eaInodeReader());
        }
        try (InodeLocks.Locked l = locks.read(ino)) {
            return attributes(inodes.get(ino).inode(), ino);
        }
    }

    /**
     * posix_acl_create()'s first step: the mode of a new inode in directory {@code dirIno} before
     * {@link #inheritAcls}. Under a default ACL the umask does not apply (inheritance masks the
     * mode with the ACL instead); without one it does. A symlink's mode is left as it is.
     */
    int createMode(long dirIno, int mode, int umask) throws Ext4Exception {
        if (!inodes.get(dirIno).inode().isDirectory()) {
            throw new Ext4Exception(Errno.ENOTDIR, "inode " + dirIno + " is not a directory");
        }
        if ((mode & Inode.S_IFMT) == Inode.S_IFLNK || defaultAcl(all(dirIno)) != null) {
            return mode;
        }
        return mode & ~(umask & 0777);
    }

    private XattrReader.ValueInodeReader eaInodeReader() {
        return sb.has(Feature.EA_INODE) ? fileRead::readEaInode : null;
    }

    /** Names of the attributes a user can see (system.data and unknown indexes are hidden). */
    List<String> list(long ino) throws Ext4Exception {
        List<String> names = new ArrayList<>();
        for (Xattr x : all(ino)) {
            // trusted.* is listed only to CAP_SYS_ADMIN, as ext4_xattr_trusted_list()
            if (XattrNames.isKnown(x.nameIndex()) && x.nameIndex() != XattrNames.SYSTEM && x.nameIndex() != XattrNames.RICHACL
                    && (x.nameIndex() != XattrNames.TRUSTED || Caller.isRoot())) {
                names.add(x.fullName());
            }
        }
        return names;
    }

    /**
     * Value of attribute {@code name} (ISO-8859-1, one char per byte); ENODATA when absent. ACLs are
     * returned in the VFS xattr format.
     */
    byte[] get(long ino, String name) throws Ext4Exception {
        byte[] value = find(ino, name);
        if (value == null) {
            throw new Ext4Exception(Errno.ENODATA, "inode " + ino + " has no xattr " + name);
        }
        return value;
    }

    /**
     * {@link #get}, with null for a missing attribute: the kernel asks for
     * security.capability before the first write to every file, and an exception per new file
     * costs more than the lookup.
     */
    byte[] find(long ino, String name) throws Ext4Exception {
        Xattr key = XattrNames.split(name);
        if (key == null || key.nameIndex() == XattrNames.SYSTEM) {
            throw new Ext4Exception(Errno.EOPNOTSUPP, "unsupported xattr namespace in \"" + name + "\"");
        }
        for (Xattr x : all(ino)) {
            if (x.nameIndex() == key.nameIndex() && Arrays.equals(x.suffix(), key.suffix())) {
                boolean acl = x.nameIndex() == XattrNames.POSIX_ACL_ACCESS || x.nameIndex() == XattrNames.POSIX_ACL_DEFAULT;
                return acl ? Acl.diskToXattr(x.value(), ino) : x.value();
            }
        }
        return null;
    }
}
