package dev.ext4j.xattr;

import dev.ext4j.Ext4Exception;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * POSIX ACL codec (fs/ext4/acl.c): on disk, ext4 stores ACLs in its compact format (version 1,
 * 4-byte entries for the owner, group, mask and other, 8-byte entries for named users and groups);
 * the VFS xattr format (version 2) has 8-byte entries throughout.
 */
public final class Acl {
    static final int EXT4_ACL_VERSION = 1;
    static final int XATTR_ACL_VERSION = 2;
    static final int ACL_USER_OBJ = 0x01, ACL_USER = 0x02, ACL_GROUP_OBJ = 0x04, ACL_GROUP = 0x08,
            ACL_MASK = 0x10, ACL_OTHER = 0x20;
    static final int ACL_UNDEFINED_ID = -1;

    private Acl() {
    }

    /** Converts an on-disk ACL to the xattr format that getxattr returns. */
    public static byte[] diskToXattr(byte[] disk, long ino) throws Ext4Exception {
        ByteBuffer in = ByteBuffer.wrap(disk).order(ByteOrder.LITTLE_ENDIAN);
        if (disk.length < 4 || in.getInt(0) != EXT4_ACL_VERSION) {
            throw Ext4Exception.corrupted("inode " + ino + ": ACL of " + disk.length + " bytes has a bad header (expected version 1)");
        }
        int count = 0;
        int off = 4;
        while (off < disk.length) {
            if (off + 4 > disk.length) {
                throw Ext4Exception.corrupted("inode " + ino + ": ACL entry at byte " + off + " is cut short");
            }
            int tag = in.getShort(off) & 0xFFFF;
            off += (tag == ACL_USER || tag == ACL_GROUP) ? 8 : 4;
            if (off > disk.length) {
                throw Ext4Exception.corrupted("inode " + ino + ": ACL entry with tag " + tag + " is cut short");
            }
            count++;
        }
        ByteBuffer out = ByteBuffer.allocate(4 + 8 * count).order(ByteOrder.LITTLE_ENDIAN);
        out.putInt(XATTR_ACL_VERSION);
        off = 4;
        while (off < disk.length) {
            int tag = in.getShort(off) & 0xFFFF;
            int perm = in.getShort(off + 2) & 0xFFFF;
            boolean named = tag == ACL_USER || tag == ACL_GROUP;
            switch (tag) {
                case ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER -> { }
                default -> throw Ext4Exception.corrupted("inode " + ino + ": ACL entry at byte " + off + " has unknown tag " + tag);
            }
            out.putShort((short) tag).putShort((short) perm).putInt(named ? in.getInt(off + 4) : ACL_UNDEFINED_ID);
            off += named ? 8 : 4;
        }
        return out.array();
    }

    /** Converts an ACL in the xattr format setxattr receives into the on-disk format. */
    public static byte[] xattrToDisk(byte[] xattr) throws Ext4Exception {
        ByteBuffer in = ByteBuffer.wrap(xattr).order(ByteOrder.LITTLE_ENDIAN);
        if (xattr.length < 4 || (xattr.length - 4) % 8 != 0 || in.getInt(0) != XATTR_ACL_VERSION) {
            throw new Ext4Exception(dev.ext4j.Errno.EINVAL, "ACL of " + xattr.length + " bytes is not in the version 2 xattr format");
        }
        ByteBuffer out = ByteBuffer.allocate(xattr.length).order(ByteOrder.LITTLE_ENDIAN);
        out.putInt(EXT4_ACL_VERSION);
        for (int off = 4; off < xattr.length; off += 8) {
            int tag = in.getShort(off) & 0xFFFF;
            out.putShort((short) tag).putShort(in.getShort(off + 2));
            switch (tag) {
                case ACL_USER, ACL_GROUP -> out.putInt(in.getInt(off + 4));
                case ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER -> { }
                default -> throw new Ext4Exception(dev.ext4j.Errno.EINVAL, "ACL entry with unknown tag " + tag);
            }
        }
        byte[] disk = new byte[out.position()];
        out.flip().get(disk);
        return disk;
    }

    /**
     * The permission bits an access ACL (xattr format) implies (posix_acl_update_mode()): owner
     * from ACL_USER_OBJ, group from ACL_MASK when there is one, else from ACL_GROUP_OBJ, other
     * from ACL_OTHER.
     */
    public static int permissionBits(byte[] xattr) {
        ByteBuffer in = ByteBuffer.wrap(xattr).order(ByteOrder.LITTLE_ENDIAN);
        int user = 0, group = 0, mask = -1, other = 0;
        for (int off = 4; off + 8 <= xattr.length; off += 8) {
            int tag = in.getShort(off) & 0xFFFF;
            int perm = in.getShort(off + 2) & 7;
            switch (tag) {
                case ACL_USER_OBJ -> user = perm;
                case ACL_GROUP_OBJ -> group = perm;
                case ACL_MASK -> mask = perm;
                case ACL_OTHER -> other = perm;
                default -> { }
            }
        }
        return (user << 6) | ((mask >= 0 ? mask : group) << 3) | other;
    }

    /**
     * posix_acl_permission(): whether an access ACL (xattr format, entries in the canonical order)
     * grants every bit of {@code want} (4 read, 2 write, 1 execute) to the caller {@code uid}
     * with the groups {@code inGroup}, on an inode of owner {@code ownerUid} and group {@code
     * ownerGid}. The first matching entry of the owner, a named user, and other decides; of the
     * owning and named groups, the first one that matches and grants; a match that does not grant
     * leaves other out. Named users and groups are limited by the mask. A malformed ACL grants
     * nothing.
     */
    public static boolean permits(byte[] xattr, long ownerUid, long ownerGid, long uid, java.util.function.LongPredicate inGroup, int want) {
        ByteBuffer in = ByteBuffer.wrap(xattr).order(ByteOrder.LITTLE_ENDIAN);
        want &= 7;
        boolean groupMatched = false;
        for (int off = 4; off + 8 <= xattr.length; off += 8) {
            int tag = in.getShort(off) & 0xFFFF;
            int perm = in.getShort(off + 2) & 7;
            long id = in.getInt(off + 4) & 0xFFFFFFFFL;
            switch (tag) {
                case ACL_USER_OBJ -> {
                    if (uid == ownerUid) {
                        return (perm & want) == want;
                    }
                }
                case ACL_USER -> {
                    if (uid == id) {
                        return (perm & mask(in, off, xattr.length) & want) == want;
                    }
                }
                case ACL_GROUP_OBJ, ACL_GROUP -> {
                    if (inGroup.test(tag == ACL_GROUP ? id : ownerGid)) {
                        groupMatched = true;
                        if ((perm & want) == want) {
                            return (perm & mask(in, off, xattr.length) & want) == want;
                        }
                    }
                }
                case ACL_MASK -> { }
                case ACL_OTHER -> {
                    return !groupMatched && (perm & want) == want;
                }
                default -> {
                    return false;
                }
            }
        }
        return false;
    }

    /** The permissions of the ACL_MASK entry after the entry at {@code from}, all (7) without one. */
    private static int mask(ByteBuffer in, int from, int length) {
        for (int off = from + 8; off + 8 <= length; off += 8) {
            if ((in.getShort(off) & 0xFFFF) == ACL_MASK) {
                return in.getShort(off + 2) & 7;
            }
        }
        return 7;
    }

    /** True when the ACL says no more than the permission bits (posix_acl_equiv_mode() == 0). */
    public static boolean equivalentToMode(byte[] xattr) {
        ByteBuffer in = ByteBuffer.wrap(xattr).order(ByteOrder.LITTLE_ENDIAN);
        for (int off = 4; off + 8 <= xattr.length; off += 8) {
            int tag = in.getShort(off) & 0xFFFF;
            if (tag != ACL_USER_OBJ && tag != ACL_GROUP_OBJ && tag != ACL_OTHER) {
                return false;
            }
        }
        return true;
    }

    /** A new inode's access ACL (xattr format; null when the mode bits say it all) and its mode. */
    public record Inherited(byte[] access, int mode) {
    }

    /**
     * posix_acl_create_masq(): a new inode's access ACL from its directory's default ACL
     * ({@code defaultAcl}, xattr format), and its permission bits: each of the owner, group-or-mask
     * and other entries is cut down to what the create {@code mode} allows, and the mode to what
     * the entries allow. The file type and the setuid, setgid and sticky bits of {@code mode} stay.
     */
    public static Inherited createMasq(byte[] defaultAcl, int mode) {
        byte[] acl = defaultAcl.clone();
        ByteBuffer b = ByteBuffer.wrap(acl).order(ByteOrder.LITTLE_ENDIAN);
        int m = mode & 0777;
        int groupObj = -1, maskObj = -1;
        boolean equivalent = true;
        for (int off = 4; off + 8 <= acl.length; off += 8) {
            int perm = b.getShort(off + 2) & 0xFFFF;
            switch (b.getShort(off) & 0xFFFF) {
                case ACL_USER_OBJ -> {
                    perm &= (m >> 6) | ~7;
                    m &= (perm << 6) | ~0700;
                }
                case ACL_OTHER -> {
                    perm &= m | ~7;
                    m &= perm | ~07;
                }
                case ACL_GROUP_OBJ -> groupObj = off;
                case ACL_MASK -> {
                    maskObj = off;
                    equivalent = false;
                }
                default -> equivalent = false; // named users and groups
            }
            b.putShort(off + 2, (short) perm);
        }
        int g = maskObj >= 0 ? maskObj : groupObj;
        if (g >= 0) {
            int perm = (b.getShort(g + 2) & 0xFFFF) & ((m >> 3) | ~7);
            b.putShort(g + 2, (short) perm);
            m &= (perm << 3) | ~070;
        }
        return new Inherited(equivalent ? null : acl, (mode & ~0777) | m);
    }

    /**
     * posix_acl_chmod(): an access ACL (xattr format) after chmod to {@code mode}: the owner,
     * other, and mask (or, without a mask, owning group) entries take the new permission bits;
     * named entries stay.
     */
    public static byte[] chmod(byte[] xattr, int mode) {
        byte[] acl = xattr.clone();
        ByteBuffer b = ByteBuffer.wrap(acl).order(ByteOrder.LITTLE_ENDIAN);
        int groupObj = -1, maskObj = -1;
        for (int off = 4; off + 8 <= acl.length; off += 8) {
            switch (b.getShort(off) & 0xFFFF) {
                case ACL_USER_OBJ -> b.putShort(off + 2, (short) ((mode >> 6) & 7));
                case ACL_OTHER -> b.putShort(off + 2, (short) (mode & 7));
                case ACL_GROUP_OBJ -> groupObj = off;
                case ACL_MASK -> maskObj = off;
                default -> { }
            }
        }
        int g = maskObj >= 0 ? maskObj : groupObj;
        if (g >= 0) {
            b.putShort(g + 2, (short) ((mode >> 3) & 7));
        }
        return acl;
    }
}
