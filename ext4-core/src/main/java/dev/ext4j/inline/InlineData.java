package dev.ext4j.inline;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.format.Inode;
import dev.ext4j.format.XattrEntry;
import dev.ext4j.xattr.Xattr;
import dev.ext4j.xattr.XattrNames;
import dev.ext4j.xattr.XattrReader;
import dev.ext4j.xattr.XattrWriter;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The inline data of an inode being changed (fs/ext4/inline.c): the first
 * {@value #MIN_SIZE} bytes in i_block, the rest in the value of the "system.data" xattr in the
 * inode body, which exists (perhaps empty) whenever EXT4_INLINE_DATA_FL is set. The inline size
 * (the kernel's i_inline_size) is {@value #MIN_SIZE} plus the value's length.
 *
 * <p>Everything here changes a copy of the inode that the caller writes once it is done (under the
 * inode's write lock). The other attributes of the inode body keep their order; the body is
 * written back packed, with system.data appended when it is new, as ext4_xattr_ibody_set() adds
 * an entry after the last one.
 */
public final class InlineData {
    /** EXT4_MIN_INLINE_DATA_SIZE: the bytes of i_block. */
    public static final int MIN_SIZE = Inode.I_BLOCK_SIZE;
    /** EXT4_XATTR_SYSTEM_DATA, under name index 7 (system.). */
    static final byte[] NAME = {'d', 'a', 't', 'a'};
    /** EXT4_XATTR_ROUND. */
    private static final int XATTR_ROUND = 3;

    private InlineData() {
    }

    /** EXT4_XATTR_SIZE(): a value's bytes rounded up to 4. */
    private static int xattrSize(int n) {
        return (n + XATTR_ROUND) & ~XATTR_ROUND;
    }

    private static boolean isData(Xattr x) {
        return x.nameIndex() == XattrNames.SYSTEM && Arrays.equals(x.suffix(), NAME);
    }

    /** Bytes after i_extra_isize: where the in-inode xattrs live (0 for 128-byte inodes). */
    private static int ibodyRoom(Inode in) {
        return in.rawSize() > Inode.GOOD_OLD_SIZE ? in.rawSize() - Inode.GOOD_OLD_SIZE - in.extraIsize() : 0;
    }

    private static List<Xattr> ibody(Inode in, long ino) throws Ext4Exception {
        // no value inodes: a filesystem with ea_inode is never mounted read-write
        return XattrReader.readIbody(in, ino, null);
    }

    /**
     * get_max_inline_xattr_value_size(): the largest system.data value the inode body could hold
     * now, counting the space the value already takes, with the body packed as ext4j writes it.
     */
    public static int maxValueSize(Inode in, long ino) throws Ext4Exception {
        if (in.rawSize() <= Inode.GOOD_OLD_SIZE || in.extraIsize() == 0) {
            return 0;
        }
        int area = ibodyRoom(in) - XattrEntry.IBODY_HEADER_SIZE;
        List<Xattr> body = ibody(in, ino);
        int nameLen = XattrEntry.entryLen(NAME.length);
        int free;
        if (body.isEmpty()) {
            // the entry, the 4-byte end of the entry list, and rounding
            free = xattrSize(area - nameLen - XATTR_ROUND - 4);
        } else {
            int minOffs = area;
            int entries = 0;
            int own = -1;
            for (Xattr x : body) {
                entries += XattrEntry.entryLen(x.suffix().length);
                minOffs -= xattrSize(x.value().length);
                if (isData(x)) {
                    own = x.value().length;
                }
            }
            free = minOffs - entries - 4;
            if (own >= 0) {
                free += xattrSize(own);
            } else {
                free -= nameLen;
                free = free > XATTR_ROUND ? xattrSize(free - XATTR_ROUND) : 0;
            }
        }
        return Math.max(0, free);
    }

    /** ext4_get_max_inline_size(): the most data the inode could hold inline now; 0 when it has no room for system.data. */
    public static int maxSize(Inode in, long ino) throws Ext4Exception {
        int v = maxValueSize(in, ino);
        return v == 0 ? 0 : v + MIN_SIZE;
    }

    /** The system.data value; EUCLEAN when an inode with EXT4_INLINE_DATA_FL has none. */
    static byte[] value(Inode in, long ino) throws Ext4Exception {
        for (Xattr x : ibody(in, ino)) {
            if (isData(x)) {
                return x.value();
            }
        }
        throw Ext4Exception.corrupted("inode " + ino + " has inline data but no system.data xattr");
    }

    /** The kernel's i_inline_size: i_block plus the system.data value. */
    public static int size(Inode in, long ino) throws Ext4Exception {
        return MIN_SIZE + value(in, ino).length;
    }

    /** All inline bytes: the 60 of i_block, then the system.data value. */
    public static byte[] read(Inode in, long ino) throws Ext4Exception {
        byte[] v = value(in, ino);
        byte[] all = new byte[MIN_SIZE + v.length];
        in.iBlock().get(0, all, 0, MIN_SIZE);
        System.arraycopy(v, 0, all, MIN_SIZE, v.length);
        return all;
    }

    /** Sets the system.data value, keeping the other body attributes; ENOSPC when the body cannot hold it. */
    static void setValue(Inode in, long ino, byte[] value) throws Ext4Exception {
        List<Xattr> body = new ArrayList<>(ibody(in, ino));
        Xattr x = new Xattr(XattrNames.SYSTEM, NAME, value);
        int at = -1;
        for (int i = 0; i < body.size(); i++) {
            if (isData(body.get(i))) {
                at = i;
            }
        }
        if (at >= 0) {
            body.set(at, x);
        } else {
            body.add(x);
        }
        if (XattrWriter.ibodySize(body) > ibodyRoom(in)) {
            throw new Ext4Exception(Errno.ENOSPC, "inode " + ino + ": no room in the inode body for " + value.length
                    + " bytes of inline data past i_block");
        }
        XattrWriter.writeIbody(in, body);
    }

    /**
     * ext4_create_inline_data(): makes the inode inline with room for {@code len} bytes (a zeroed
     * system.data of {@code len - 60} bytes, or an empty one), i_block zeroed, EXT4_INODE_EXTENTS
     * cleared and EXT4_INODE_INLINE_DATA set. ENOSPC, with the inode unchanged, when
     * {@code len} is past {@link #maxSize}.
     */
    public static void create(Inode in, long ino, int len) throws Ext4Exception {
        int max = maxSize(in, ino);
        if (len > max) {
            throw new Ext4Exception(Errno.ENOSPC, "inode " + ino + ": " + len + " bytes do not fit inline (max " + max + ")");
        }
        setValue(in, ino, new byte[Math.max(0, len - MIN_SIZE)]);
        in.setIBlock(ByteBuffer.allocate(Inode.I_BLOCK_SIZE));
        in.setFlags((in.flags() & ~Inode.EXTENTS_FL) | Inode.INLINE_DATA_FL);
    }

    /**
     * Replaces the inline content by {@code data}: i_block gets its first 60 bytes (zero-padded),
     * system.data the rest, exactly (an empty value when {@code data} is 60 bytes or fewer).
     */
    static void store(Inode in, long ino, byte[] data) throws Ext4Exception {
        setValue(in, ino, data.length > MIN_SIZE ? Arrays.copyOfRange(data, MIN_SIZE, data.length) : new byte[0]);
        ByteBuffer b = ByteBuffer.allocate(Inode.I_BLOCK_SIZE);
        b.put(data, 0, Math.min(data.length, MIN_SIZE));
        in.setIBlock(b);
    }

    /** A new inode (a symlink) whose content is {@code data}, inline: ENOSPC when it does not fit. */
    public static void createWith(Inode in, long ino, byte[] data) throws Ext4Exception {
        create(in, ino, data.length);
        store(in, ino, data);
    }

    /**
     * ext4_write_inline_data() after ext4_prepare_inline_data(): writes {@code src} at {@code pos}
     * of a regular file that is inline, or makes it inline first (ext4_create_inline_data()). The
     * inline size grows to cover the write when needed (ext4_update_inline_data()); bytes between
     * the old i_size and {@code pos} read as zeros. i_size is the caller's. ENOSPC, with the inode
     * unchanged, when {@code pos + src.remaining()} is past {@link #maxSize}.
     */
    public static void write(Inode in, long ino, long pos, ByteBuffer src) throws Ext4Exception {
        long end = pos + src.remaining();
        int max = maxSize(in, ino);
        if (end > max) {
            throw new Ext4Exception(Errno.ENOSPC, "inode " + ino + ": a write to byte " + end + " does not fit inline (max " + max + ")");
        }
        if (!in.hasFlag(Inode.INLINE_DATA_FL)) {
            create(in, ino, (int) end);
        }
        byte[] data = read(in, ino);
        zeroFrom(data, in.size());
        if (data.length < end) {
            data = Arrays.copyOf(data, (int) end);
        }
        src.get(data, (int) pos, src.remaining());
        store(in, ino, data);
    }

    /**
     * ext4_inline_data_truncate(): the inline bytes past the new i_size become zeros, and when it
     * is within the inline size the system.data value shrinks to end there (empty at 60 bytes or
     * fewer). A size past the inline data leaves it as it is. i_size is the caller's.
     */
    public static void truncate(Inode in, long ino, long newSize) throws Ext4Exception {
        byte[] data = read(in, ino);
        zeroFrom(data, Math.min(in.size(), newSize));
        store(in, ino, Arrays.copyOf(data, (int) Math.min(data.length, Math.max(MIN_SIZE, newSize))));
    }

    private static void zeroFrom(byte[] data, long from) {
        if (from < data.length) {
            Arrays.fill(data, (int) Math.max(0, from), data.length, (byte) 0);
        }
    }

    /**
     * ext4_destroy_inline_data_nolock(): system.data goes, i_block is zeroed, EXT4_INLINE_DATA_FL
     * cleared and, with the extents feature, a directory, regular file or symlink gets an empty
     * extent root and EXT4_EXTENTS_FL (without it, the zeroed i_block is an empty block map). The
     * caller maps the data that was inline.
     */
    public static void destroy(Inode in, long ino, boolean extentsFeature) throws Ext4Exception {
        List<Xattr> body = new ArrayList<>(ibody(in, ino));
        body.removeIf(InlineData::isData);
        XattrWriter.writeIbody(in, body);
        in.setIBlock(ByteBuffer.allocate(Inode.I_BLOCK_SIZE));
        int flags = in.flags() & ~Inode.INLINE_DATA_FL;
        if (extentsFeature && (in.isDirectory() || in.isRegular() || in.isSymlink())) {
            flags |= Inode.EXTENTS_FL;
            ExtentTree.initEmpty(in.iBlock());
        }
        in.setFlags(flags);
    }
}
