package dev.ext4j.format;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * View of struct ext4_inode over the on-disk bytes (s_inode_size long). Accessors join the lo/hi
 * halves and decode timestamps; the checksum covers exactly these bytes.
 *
 * <pre>
 * 0x00 i_mode (16)   0x02 i_uid (16)   0x04 i_size_lo   0x08 i_atime   0x0C i_ctime   0x10 i_mtime
 * 0x14 i_dtime       0x18 i_gid (16)   0x1A i_links_count (16)  0x1C i_blocks_lo  0x20 i_flags
 * 0x24 l_i_version   0x28 i_block[15]  0x64 i_generation  0x68 i_file_acl_lo  0x6C i_size_high
 * 0x74 l_i_blocks_high (16)  0x76 l_i_file_acl_high (16)  0x78 l_i_uid_high (16)
 * 0x7A l_i_gid_high (16)     0x7C l_i_checksum_lo (16)
 * 0x80 i_extra_isize (16)    0x82 i_checksum_hi (16)  0x84 i_ctime_extra  0x88 i_mtime_extra
 * 0x8C i_atime_extra  0x90 i_crtime  0x94 i_crtime_extra  0x98 i_version_hi  0x9C i_projid
 * </pre>
 */
public final class Inode {
    public static final int GOOD_OLD_SIZE = 128;
    public static final int N_BLOCKS = 15;
    public static final int I_BLOCK_SIZE = N_BLOCKS * 4;

    static final int I_MODE = 0x00;
    static final int I_UID = 0x02;
    static final int I_SIZE_LO = 0x04;
    static final int I_ATIME = 0x08;
    static final int I_CTIME = 0x0C;
    static final int I_MTIME = 0x10;
    static final int I_DTIME = 0x14;
    static final int I_GID = 0x18;
    static final int I_LINKS_COUNT = 0x1A;
    static final int I_BLOCKS_LO = 0x1C;
    static final int I_FLAGS = 0x20;
    public static final int I_BLOCK = 0x28;
    static final int I_GENERATION = 0x64;
    static final int I_FILE_ACL_LO = 0x68;
    static final int I_SIZE_HIGH = 0x6C;
    static final int L_I_BLOCKS_HIGH = 0x74;
    static final int L_I_FILE_ACL_HIGH = 0x76;
    static final int L_I_UID_HIGH = 0x78;
    static final int L_I_GID_HIGH = 0x7A;
    static final int L_I_CHECKSUM_LO = 0x7C;
    static final int I_EXTRA_ISIZE = 0x80;
    static final int I_CHECKSUM_HI = 0x82;
    static final int I_CTIME_EXTRA = 0x84;
    static final int I_MTIME_EXTRA = 0x88;
    static final int I_ATIME_EXTRA = 0x8C;
    static final int I_CRTIME = 0x90;
    static final int I_CRTIME_EXTRA = 0x94;
    static final int I_PROJID = 0x9C;

    /** i_flags bits. */
    public static final int SECRM_FL = 0x1, UNRM_FL = 0x2, COMPR_FL = 0x4, SYNC_FL = 0x8,
            IMMUTABLE_FL = 0x10, APPEND_FL = 0x20, NODUMP_FL = 0x40, NOATIME_FL = 0x80,
            ENCRYPT_FL = 0x800, INDEX_FL = 0x1000, JOURNAL_DATA_FL = 0x4000, NOTAIL_FL = 0x8000,
            DIRSYNC_FL = 0x10000, TOPDIR_FL = 0x20000, HUGE_FILE_FL = 0x40000, EXTENTS_FL = 0x80000,
            VERITY_FL = 0x100000, EA_INODE_FL = 0x200000, DAX_FL = 0x2000000, INLINE_DATA_FL = 0x10000000,
            PROJINHERIT_FL = 0x20000000, CASEFOLD_FL = 0x40000000;

    /** File type bits of i_mode. */
    public static final int S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000,
            S_IFBLK = 0x6000, S_IFDIR = 0x4000, S_IFCHR = 0x2000, S_IFIFO = 0x1000;

    private final ByteBuffer buf;
    private final int size;

    /** Wraps the raw inode bytes (at least 128). */
    public Inode(byte[] raw) {
        this.buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        this.size = raw.length;
    }

    public ByteBuffer raw() {
        return buf.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    public int rawSize() {
        return size;
    }

    private long u32(int off) {
        return buf.getInt(off) & 0xFFFFFFFFL;
    }

    private int u16(int off) {
        return buf.getShort(off) & 0xFFFF;
    }

    /** True when the inode is large enough and i_extra_isize covers the field at {@code off}. */
    private boolean hasExtra(int off, int len) {
        return size > GOOD_OLD_SIZE && off + len <= GOOD_OLD_SIZE + extraIsize();
    }

    public int mode() { return u16(I_MODE); }
    public int fileType() { return mode() & S_IFMT; }
    public boolean isDirectory() { return fileType() == S_IFDIR; }
    public boolean isRegular() { return fileType() == S_IFREG; }
    public boolean isSymlink() { return fileType() == S_IFLNK; }
    public long uid() { return u16(I_UID) | (long) u16(L_I_UID_HIGH) << 16; }
    public long gid() { return u16(I_GID) | (long) u16(L_I_GID_HIGH) << 16; }
    public long size() { return u32(I_SIZE_LO) | u32(I_SIZE_HIGH) << 32; }
    public int linksCount() { return u16(I_LINKS_COUNT); }
    public int flags() { return buf.getInt(I_FLAGS); }
    public boolean hasFlag(int flag) { return (flags() & flag) != 0; }
    public long dtime() { return u32(I_DTIME); }
    public long generation() { return u32(I_GENERATION); }
    public long fileAcl() { return u32(I_FILE_ACL_LO) | (long) u16(L_I_FILE_ACL_HIGH) << 32; }
    public int extraIsize() { return size > GOOD_OLD_SIZE ? u16(I_EXTRA_ISIZE) : 0; }
    public long projectId() { return hasExtra(I_PROJID, 4) ? u32(I_PROJID) : 0; }

    /** i_block word {@code i} (0..14). */
    public long blockWord(int i) {
        return u32(I_BLOCK + 4 * i);
    }

    /** The 60 bytes of i_block: extent root, block map, fast symlink or inline data. */
    public ByteBuffer iBlock() {
        return buf.duplicate().position(I_BLOCK).limit(I_BLOCK + I_BLOCK_SIZE).slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * i_blocks in 512-byte sectors. With huge_file the count has 48 bits, and HUGE_FILE_FL says it
     * counts filesystem blocks instead.
     */
    public long blocks512(boolean hugeFileFeature, int blockSize) {
        long n = u32(I_BLOCKS_LO);
        if (!hugeFileFeature) {
            return n;
        }
        n |= (long) u16(L_I_BLOCKS_HIGH) << 32;
        return hasFlag(HUGE_FILE_FL) ? n * (blockSize / 512) : n;
    }

    public long atimeSeconds() { return seconds(I_ATIME, I_ATIME_EXTRA); }
    public long mtimeSeconds() { return seconds(I_MTIME, I_MTIME_EXTRA); }
    public long ctimeSeconds() { return seconds(I_CTIME, I_CTIME_EXTRA); }
    public long crtimeSeconds() { return hasExtra(I_CRTIME, 4) ? seconds(I_CRTIME, I_CRTIME_EXTRA) : 0; }
    public int atimeNanos() { return nanos(I_ATIME_EXTRA); }
    public int mtimeNanos() { return nanos(I_MTIME_EXTRA); }
    public int ctimeNanos() { return nanos(I_CTIME_EXTRA); }
    public int crtimeNanos() { return hasExtra(I_CRTIME, 4) ? nanos(I_CRTIME_EXTRA) : 0; }

    /** Seconds: the signed 32-bit field plus the two epoch bits of the _extra word times 2^32. */
    private long seconds(int off, int extraOff) {
        long s = buf.getInt(off);
        if (hasExtra(extraOff, 4)) {
            s += (long) (buf.getInt(extraOff) & 3) << 32;
        }
        return s;
    }

    private int nanos(int extraOff) {
        return hasExtra(extraOff, 4) ? buf.getInt(extraOff) >>> 2 : 0;
    }

    /** Device number from i_block: the old 16-bit encoding in word 0, else the new one in word 1. */
    public int deviceMajor() {
        long w0 = blockWord(0);
        if (w0 != 0) {
            return (int) ((w0 >> 8) & 0xFF);
        }
        long w1 = blockWord(1);
        return (int) ((w1 & 0xFFF00) >> 8);
    }

    public int deviceMinor() {
        long w0 = blockWord(0);
        if (w0 != 0) {
            return (int) (w0 & 0xFF);
        }
        long w1 = blockWord(1);
        return (int) ((w1 & 0xFF) | ((w1 >> 12) & 0xFFF00));
    }

    public int storedChecksum() {
        int lo = u16(L_I_CHECKSUM_LO);
        return hasExtra(I_CHECKSUM_HI, 2) ? lo | u16(I_CHECKSUM_HI) << 16 : lo;
    }

    /** True when the stored checksum has 32 bits (large inode with i_checksum_hi). */
    public boolean checksumHasHi() {
        return hasExtra(I_CHECKSUM_HI, 2);
    }

    /**
     * ext4_inode_csum(): crc32c(seed, ino, generation, the inode with both checksum fields as zero),
     * truncated to 16 bits when there is no i_checksum_hi.
     */
    public int computeChecksum(int fsSeed, long ino) {
        int c = Checksums.crc32cLe32(fsSeed, (int) ino);
        c = Checksums.crc32cLe32(c, (int) generation());
        c = Checksums.crc32cZeroing(c, buf, 0, size, L_I_CHECKSUM_LO, checksumHasHi() ? I_CHECKSUM_HI : -1, 2);
        return checksumHasHi() ? c : c & 0xFFFF;
    }

    // ---- setters (the inode's checksum is recomputed by the caller once all changes are made) ----

    public void setMode(int v) { buf.putShort(I_MODE, (short) v); }
    public void setUid(long v) { buf.putShort(I_UID, (short) v); buf.putShort(L_I_UID_HIGH, (short) (v >>> 16)); }
    public void setGid(long v) { buf.putShort(I_GID, (short) v); buf.putShort(L_I_GID_HIGH, (short) (v >>> 16)); }
    public void setSize(long v) { buf.putInt(I_SIZE_LO, (int) v); buf.putInt(I_SIZE_HIGH, (int) (v >>> 32)); }
    public void setLinksCount(int v) { buf.putShort(I_LINKS_COUNT, (short) v); }
    public void setFlags(int v) { buf.putInt(I_FLAGS, v); }
    public void setDtime(long v) { buf.putInt(I_DTIME, (int) v); }
    public void setGeneration(long v) { buf.putInt(I_GENERATION, (int) v); }
    public void setFileAcl(long v) { buf.putInt(I_FILE_ACL_LO, (int) v); buf.putShort(L_I_FILE_ACL_HIGH, (short) (v >>> 32)); }
    public void setExtraIsize(int v) { if (size > GOOD_OLD_SIZE) { buf.putShort(I_EXTRA_ISIZE, (short) v); } }

    /**
     * Sets i_blocks from a count of 512-byte sectors; counts past 32 bits need huge_file (48 bits),
     * past 48 bits HUGE_FILE_FL with the count in filesystem blocks.
     */
    public void setBlocks512(long sectors, int blockSize) {
        int flags = flags() & ~HUGE_FILE_FL;
        long v = sectors;
        if (sectors >= 1L << 48) {
            flags |= HUGE_FILE_FL;
            v = sectors / (blockSize / 512);
        }
        setFlags(flags);
        buf.putInt(I_BLOCKS_LO, (int) v);
        buf.putShort(L_I_BLOCKS_HIGH, (short) (v >>> 32));
    }

    public void setAtime(long seconds, int nanos) { setTime(I_ATIME, I_ATIME_EXTRA, seconds, nanos); }
    public void setMtime(long seconds, int nanos) { setTime(I_MTIME, I_MTIME_EXTRA, seconds, nanos); }
    public void setCtime(long seconds, int nanos) { setTime(I_CTIME, I_CTIME_EXTRA, seconds, nanos); }
    public void setCrtime(long seconds, int nanos) { if (hasExtra(I_CRTIME, 4)) { setTime(I_CRTIME, I_CRTIME_EXTRA, seconds, nanos); } }

    /** Low 32 bits in the field; epoch bits and nanoseconds in the _extra word when it exists. */
    private void setTime(int off, int extraOff, long seconds, int nanos) {
        buf.putInt(off, (int) seconds);
        if (hasExtra(extraOff, 4)) {
            int epoch = (int) (((seconds - (int) seconds) >> 32) & 3);
            buf.putInt(extraOff, (nanos << 2) | epoch);
        }
    }

    /** Replaces the 60 bytes of i_block. */
    public void setIBlock(ByteBuffer src) {
        for (int i = 0; i < I_BLOCK_SIZE; i++) {
            buf.put(I_BLOCK + i, src.get(i));
        }
    }

    /** Stores a checksum computed by {@link #computeChecksum}. */
    public void setChecksum(int c) {
        buf.putShort(L_I_CHECKSUM_LO, (short) c);
        if (checksumHasHi()) {
            buf.putShort(I_CHECKSUM_HI, (short) (c >>> 16));
        }
    }

    /** A copy of the raw bytes, for a changed version of this inode. */
    public Inode copy() {
        byte[] raw = new byte[size];
        buf.get(0, raw);
        return new Inode(raw);
    }
}
