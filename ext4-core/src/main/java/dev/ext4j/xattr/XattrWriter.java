package dev.ext4j.xattr;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.format.XattrEntry;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Lays out extended attributes (fs/ext4/xattr.c, ext4_xattr_set_handle()): the inode body first,
 * then one xattr block. Attributes already in the inode body stay there while they fit; a new or
 * changed one goes to the body when it fits and to the block otherwise. The block's entries are
 * sorted as the kernel keeps them, with entry and block hashes (ext4_xattr_hash_entry(),
 * ext4_xattr_rehash()) that e2fsck checks.
 */
public final class XattrWriter {
    public static final int XATTR_CREATE = 1;
    public static final int XATTR_REPLACE = 2;

    private static final int NAME_HASH_SHIFT = 5;
    private static final int VALUE_HASH_SHIFT = 16;
    private static final int BLOCK_HASH_SHIFT = 16;

    /** Where each attribute goes after a change. */
    public record Layout(List<Xattr> ibody, List<Xattr> block) {
    }

    private XattrWriter() {
    }

    /**
     * Applies set ({@code value != null}) or remove to the current attributes and decides where each
     * goes. EEXIST/ENODATA per {@code flags}; ENOSPC when they fit in neither place.
     *
     * @param ibodyRoom bytes available in the inode body after i_extra_isize (0 for 128-byte inodes)
     */
    public static Layout change(List<Xattr> ibody, List<Xattr> block, Xattr key, byte[] value, int flags,
                                int ibodyRoom, int blockSize) throws Ext4Exception {
        List<Xattr> in = new ArrayList<>(ibody);
        List<Xattr> out = new ArrayList<>(block);
        boolean found = in.removeIf(x -> same(x, key)) | out.removeIf(x -> same(x, key));
        if (value == null) {
            if (!found) {
                throw new Ext4Exception(Errno.ENODATA, "no such xattr");
            }
            return new Layout(in, out);
        }
        if (found && (flags & XATTR_CREATE) != 0) {
            throw new Ext4Exception(Errno.EEXIST, "xattr exists (XATTR_CREATE)");
        }
        if (!found && (flags & XATTR_REPLACE) != 0) {
            throw new Ext4Exception(Errno.ENODATA, "no such xattr (XATTR_REPLACE)");
        }
        Xattr x = new Xattr(key.nameIndex(), key.suffix(), value);
        List<Xattr> tryIn = new ArrayList<>(in);
        tryIn.add(x);
        if (ibodySize(tryIn) <= ibodyRoom) {
            return new Layout(tryIn, out);
        }
        List<Xattr> tryOut = new ArrayList<>(out);
        tryOut.add(x);
        if (blockSize(tryOut) <= blockSize) {
            return new Layout(in, tryOut);
        }
        throw new Ext4Exception(Errno.ENOSPC, "xattr of " + value.length + " bytes does not fit in the inode or its xattr block");
    }

    private static boolean same(Xattr a, Xattr b) {
        return a.nameIndex() == b.nameIndex() && Arrays.equals(a.suffix(), b.suffix());
    }

    private static int valueLen(Xattr x) {
        return (x.value().length + 3) & ~3;
    }

    /** Bytes the body needs: magic, entries, terminator, values. */
    public static int ibodySize(List<Xattr> xs) {
        if (xs.isEmpty()) {
            return 0;
        }
        int n = XattrEntry.IBODY_HEADER_SIZE + 4;
        for (Xattr x : xs) {
            n += XattrEntry.entryLen(x.suffix().length) + valueLen(x);
        }
        return n;
    }

    static int blockSize(List<Xattr> xs) {
        int n = XattrEntry.BLOCK_HEADER_SIZE + 4;
        for (Xattr x : xs) {
            n += XattrEntry.entryLen(x.suffix().length) + valueLen(x);
        }
        return n;
    }

    /**
     * Writes the body attributes into {@code inode} after i_extra_isize (or clears the area when
     * there are none).
     */
    public static void writeIbody(Inode inode, List<Xattr> xs) {
        ByteBuffer b = inode.raw();
        int start = Inode.GOOD_OLD_SIZE + inode.extraIsize();
        int end = inode.rawSize();
        for (int i = start; i < end; i++) {
            b.put(i, (byte) 0);
        }
        if (xs.isEmpty() || start + XattrEntry.IBODY_HEADER_SIZE > end) {
            return;
        }
        b.putInt(start, XattrEntry.MAGIC);
        int first = start + XattrEntry.IBODY_HEADER_SIZE;
        writeEntries(b, first, first, end, xs, false);
    }

    /** Fills a whole xattr block: header (refcount 1, blocks 1, hash), sorted entries, values. */
    public static void writeBlock(ByteBuffer b, List<Xattr> xs, int blockSize) {
        for (int i = 0; i < blockSize; i++) {
            b.put(i, (byte) 0);
        }
        List<Xattr> sorted = new ArrayList<>(xs);
        sorted.sort(Comparator.comparingInt(Xattr::nameIndex).thenComparingInt((Xattr x) -> x.suffix().length)
                .thenComparing(Xattr::suffix, Arrays::compareUnsigned));
        b.putInt(0, XattrEntry.MAGIC);
        b.putInt(4, 1);
        b.putInt(8, 1);
        int blockHash = writeEntries(b, XattrEntry.BLOCK_HEADER_SIZE, 0, blockSize, sorted, true);
        b.putInt(0x0C, blockHash);
    }

    /** Writes entries from {@code first} and values down from {@code end}; returns the block hash. */
    private static int writeEntries(ByteBuffer b, int first, int valueBase, int end, List<Xattr> xs, boolean hashed) {
        int e = first;
        int v = end;
        int blockHash = 0;
        for (Xattr x : xs) {
            byte[] name = x.suffix();
            v -= valueLen(x);
            b.put(e, (byte) name.length);
            b.put(e + 1, (byte) x.nameIndex());
            b.putShort(e + 2, (short) (x.value().length == 0 ? 0 : v - valueBase));
            b.putInt(e + 4, 0);
            b.putInt(e + 8, x.value().length);
            b.put(e + XattrEntry.ENTRY_HEADER_SIZE, name);
            b.put(v, x.value());
            int h = hashed ? entryHash(name, x.value()) : 0;
            b.putInt(e + 12, h);
            blockHash = (blockHash << BLOCK_HASH_SHIFT) ^ (blockHash >>> (32 - BLOCK_HASH_SHIFT)) ^ h;
            e += XattrEntry.entryLen(name.length);
        }
        return blockHash;
    }

    /** ext4_xattr_hash_entry(): name bytes (as signed chars, like the kernel's) then value words. */
    static int entryHash(byte[] name, byte[] value) {
        int hash = 0;
        for (byte c : name) {
            hash = (hash << NAME_HASH_SHIFT) ^ (hash >>> (32 - NAME_HASH_SHIFT)) ^ c;
        }
        ByteBuffer v = ByteBuffer.allocate((value.length + 3) & ~3).order(ByteOrder.LITTLE_ENDIAN);
        v.put(value).rewind();
        while (v.remaining() >= 4) {
            hash = (hash << VALUE_HASH_SHIFT) ^ (hash >>> (32 - VALUE_HASH_SHIFT)) ^ v.getInt();
        }
        return hash;
    }
}
