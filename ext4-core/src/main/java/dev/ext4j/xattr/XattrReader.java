package dev.ext4j.xattr;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Inode;
import dev.ext4j.format.XattrEntry;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads the extended attributes of an inode: first those in the inode body after i_extra_isize,
 * then those in the block named by i_file_acl (see ext4_xattr_ibody_get() and
 * ext4_xattr_block_get() in fs/ext4/xattr.c). Every entry and value is checked against the bytes of
 * its region before it is read, as xattr_check_inode() and ext4_xattr_check_block() do.
 */
public final class XattrReader {

    /** Reads a value stored in its own inode (the ea_inode feature). */
    @FunctionalInterface
    public interface ValueInodeReader {
        byte[] read(long valueIno, long size) throws Ext4Exception;
    }

    private XattrReader() {
    }

    /** The attributes in the inode body; empty when the inode is small or has none. */
    public static List<Xattr> readIbody(Inode inode, long ino, ValueInodeReader eaInodes) throws Ext4Exception {
        List<Xattr> out = new ArrayList<>();
        int size = inode.rawSize();
        if (size <= Inode.GOOD_OLD_SIZE) {
            return out;
        }
        int header = Inode.GOOD_OLD_SIZE + inode.extraIsize();
        if (header + XattrEntry.IBODY_HEADER_SIZE > size) {
            return out;
        }
        ByteBuffer b = inode.raw();
        if (XattrEntry.magic(b, header) != XattrEntry.MAGIC) {
            return out;
        }
        int first = header + XattrEntry.IBODY_HEADER_SIZE;
        parse(b, first, size, first, "inode " + ino + " in-inode xattrs", eaInodes, out);
        return out;
    }

    /** The attributes of xattr block {@code block}, with its header and checksum checked. */
    public static List<Xattr> readBlock(BufferCache cache, long block, long ino, boolean verifyChecksum,
                                        int fsSeed, ValueInodeReader eaInodes) throws Ext4Exception {
        ByteBuffer b = cache.get(block);
        String where = "inode " + ino + " xattr block " + block;
        int bs = cache.blockSize();
        if (XattrEntry.magic(b, 0) != XattrEntry.MAGIC) {
            throw Ext4Exception.corrupted(String.format("%s: bad magic 0x%08x (expected 0x%08x)", where, XattrEntry.magic(b, 0), XattrEntry.MAGIC));
        }
        if (XattrEntry.blocks(b) != 1) {
            throw Ext4Exception.corrupted(where + ": h_blocks " + XattrEntry.blocks(b) + " (expected 1)");
        }
        if (verifyChecksum) {
            int stored = XattrEntry.blockChecksum(b);
            int computed = XattrEntry.computeBlockChecksum(b, fsSeed, block, bs);
            if (stored != computed) {
                throw Ext4Exception.badChecksum(where, stored & 0xFFFFFFFFL, computed & 0xFFFFFFFFL);
            }
        }
        List<Xattr> out = new ArrayList<>();
        parse(b, XattrEntry.BLOCK_HEADER_SIZE, bs, 0, where, eaInodes, out);
        return out;
    }

    /**
     * Walks entries from {@code first} to the terminator inside [first, end). Value offsets count
     * from {@code valueBase}; values must lie inside [valueBase, end) and after the entry table.
     */
    private static void parse(ByteBuffer b, int first, int end, int valueBase, String where,
                              ValueInodeReader eaInodes, List<Xattr> out) throws Ext4Exception {
        int off = first;
        List<int[]> entries = new ArrayList<>();
        while (true) {
            if (off + 4 > end) {
                throw Ext4Exception.corrupted(where + ": entry list runs past the end at byte " + off + " (no terminator)");
            }
            if (XattrEntry.isLast(b, off)) {
                break;
            }
            if (off + XattrEntry.ENTRY_HEADER_SIZE > end) {
                throw Ext4Exception.corrupted(where + ": entry header at byte " + off + " does not fit (" + (end - off) + " bytes left)");
            }
            int len = XattrEntry.entryLen(XattrEntry.nameLen(b, off));
            // name_len 0 is valid: the POSIX ACL entries are a bare name index with an empty suffix
            if (off + len > end) {
                throw Ext4Exception.corrupted(where + ": entry at byte " + off + " has name_len " + XattrEntry.nameLen(b, off)
                        + " (" + (end - off) + " bytes left)");
            }
            entries.add(new int[] {off});
            off += len;
        }
        int tableEnd = off + 4;
        for (int[] e : entries) {
            int eo = e[0];
            long valueSize = XattrEntry.valueSize(b, eo);
            long valueIno = XattrEntry.valueInum(b, eo);
            byte[] value;
            if (valueIno != 0) {
                if (eaInodes == null) {
                    throw Ext4Exception.corrupted(where + ": entry at byte " + eo + " keeps its value in inode " + valueIno + " without the ea_inode feature");
                }
                value = eaInodes.read(valueIno, valueSize);
            } else {
                long start = (long) valueBase + XattrEntry.valueOffs(b, eo);
                if (valueSize > 0 && (start < tableEnd || start + valueSize > end)) {
                    throw Ext4Exception.corrupted(where + ": entry at byte " + eo + " has its value at "
                            + XattrEntry.valueOffs(b, eo) + " size " + valueSize + ", outside the value area ("
                            + (tableEnd - valueBase) + ".." + (end - valueBase) + ")");
                }
                value = new byte[(int) valueSize];
                b.get((int) start, value);
            }
            out.add(new Xattr(XattrEntry.nameIndex(b, eo), XattrEntry.name(b, eo), value));
        }
    }
}
