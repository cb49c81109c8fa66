package dev.ext4j.format;

import dev.ext4j.Ext4Exception;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * View of struct ext4_super_block: 1024 bytes at byte 1024 of the image. Field offsets are named
 * after the kernel's fields; accessors join the lo/hi halves.
 *
 * <pre>
 * 0x000 s_inodes_count        0x004 s_blocks_count_lo     0x008 s_r_blocks_count_lo
 * 0x00C s_free_blocks_count_lo 0x010 s_free_inodes_count  0x014 s_first_data_block
 * 0x018 s_log_block_size      0x01C s_log_cluster_size    0x020 s_blocks_per_group
 * 0x024 s_clusters_per_group  0x028 s_inodes_per_group    0x02C s_mtime   0x030 s_wtime
 * 0x034 s_mnt_count (16)      0x036 s_max_mnt_count (16)  0x038 s_magic (16) 0x03A s_state (16)
 * 0x03C s_errors (16)         0x03E s_minor_rev_level     0x04C s_rev_level 0x050 s_def_resuid (16)
 * 0x052 s_def_resgid (16)     0x054 s_first_ino
 * 0x058 s_inode_size (16)     0x05A s_block_group_nr (16) 0x05C s_feature_compat      0x060 s_feature_incompat
 * 0x064 s_feature_ro_compat   0x068 s_uuid[16]            0x078 s_volume_name[16]
 * 0x0CE s_reserved_gdt_blocks 0x0E0 s_journal_inum        0x0E8 s_last_orphan
 * 0x0EC s_hash_seed[4]        0x0FC s_def_hash_version    0x0FE s_desc_size (16)
 * 0x104 s_first_meta_bg       0x150 s_blocks_count_hi     0x154 s_r_blocks_count_hi
 * 0x158 s_free_blocks_count_hi 0x15C s_min_extra_isize    0x15E s_want_extra_isize
 * 0x160 s_flags               0x166 s_mmp_update_interval (16) 0x168 s_mmp_block (64)
 * 0x174 s_log_groups_per_flex 0x175 s_checksum_type
 * 0x194 s_error_count         0x198 s_first_error_time    0x19C s_first_error_ino
 * 0x1A0 s_first_error_block (64) 0x1A8 s_first_error_func[32] 0x1C8 s_first_error_line
 * 0x1CC s_last_error_time     0x1D0 s_last_error_ino      0x1D4 s_last_error_line
 * 0x1D8 s_last_error_block (64) 0x1E0 s_last_error_func[32]
 * 0x24C s_backup_bgs[2]       0x270 s_checksum_seed
 * 0x278 s_first_error_time_hi 0x279 s_last_error_time_hi  0x27A s_first_error_errcode 0x27B s_last_error_errcode
 * 0x280 s_orphan_file_inum
 * 0x3FC s_checksum
 * </pre>
 */
public final class Superblock {
    public static final int OFFSET_IN_IMAGE = 1024;
    public static final int SIZE = 1024;
    public static final int MAGIC = 0xEF53;

    static final int S_INODES_COUNT = 0x000;
    static final int S_BLOCKS_COUNT_LO = 0x004;
    static final int S_R_BLOCKS_COUNT_LO = 0x008;
    static final int S_FREE_BLOCKS_COUNT_LO = 0x00C;
    static final int S_FREE_INODES_COUNT = 0x010;
    static final int S_FIRST_DATA_BLOCK = 0x014;
    static final int S_LOG_BLOCK_SIZE = 0x018;
    static final int S_LOG_CLUSTER_SIZE = 0x01C;
    static final int S_BLOCKS_PER_GROUP = 0x020;
    static final int S_CLUSTERS_PER_GROUP = 0x024;
    static final int S_INODES_PER_GROUP = 0x028;
    static final int S_MTIME = 0x02C;
    static final int S_WTIME = 0x030;
    static final int S_MNT_COUNT = 0x034;
    static final int S_MAGIC = 0x038;
    static final int S_STATE = 0x03A;
    static final int S_ERRORS = 0x03C;
    static final int S_REV_LEVEL = 0x04C;
    static final int S_DEF_RESUID = 0x050;
    static final int S_DEF_RESGID = 0x052;
    static final int S_FIRST_INO = 0x054;
    static final int S_INODE_SIZE = 0x058;
    static final int S_BLOCK_GROUP_NR = 0x05A;
    static final int S_FEATURE_COMPAT = 0x05C;
    static final int S_FEATURE_INCOMPAT = 0x060;
    static final int S_FEATURE_RO_COMPAT = 0x064;
    static final int S_UUID = 0x068;
    static final int S_VOLUME_NAME = 0x078;
    static final int S_RESERVED_GDT_BLOCKS = 0x0CE;
    static final int S_JOURNAL_INUM = 0x0E0;
    static final int S_LAST_ORPHAN = 0x0E8;
    static final int S_HASH_SEED = 0x0EC;
    static final int S_DEF_HASH_VERSION = 0x0FC;
    static final int S_DESC_SIZE = 0x0FE;
    static final int S_FIRST_META_BG = 0x104;
    static final int S_BLOCKS_COUNT_HI = 0x150;
    static final int S_R_BLOCKS_COUNT_HI = 0x154;
    static final int S_FREE_BLOCKS_COUNT_HI = 0x158;
    static final int S_MIN_EXTRA_ISIZE = 0x15C;
    static final int S_FLAGS = 0x160;
    static final int S_MMP_UPDATE_INTERVAL = 0x166;
    static final int S_MMP_BLOCK = 0x168;
    static final int S_LOG_GROUPS_PER_FLEX = 0x174;
    static final int S_CHECKSUM_TYPE = 0x175;
    static final int S_ERROR_COUNT = 0x194;
    static final int S_FIRST_ERROR_TIME = 0x198;
    static final int S_FIRST_ERROR_INO = 0x19C;
    static final int S_FIRST_ERROR_BLOCK = 0x1A0;
    static final int S_FIRST_ERROR_FUNC = 0x1A8;
    static final int S_LAST_ERROR_TIME = 0x1CC;
    static final int S_LAST_ERROR_INO = 0x1D0;
    static final int S_LAST_ERROR_BLOCK = 0x1D8;
    static final int S_LAST_ERROR_FUNC = 0x1E0;
    static final int ERROR_FUNC_SIZE = 32;
    static final int S_FIRST_ERROR_TIME_HI = 0x278;
    static final int S_LAST_ERROR_TIME_HI = 0x279;
    static final int S_FIRST_ERROR_ERRCODE = 0x27A;
    static final int S_LAST_ERROR_ERRCODE = 0x27B;
    static final int S_BACKUP_BGS = 0x24C;
    static final int S_CHECKSUM_SEED = 0x270;
    static final int S_ORPHAN_FILE_INUM = 0x280;
    static final int S_CHECKSUM = 0x3FC;

    /** s_state bits. */
    public static final int STATE_VALID = 0x1;
    public static final int STATE_ERROR = 0x2;
    public static final int STATE_ORPHAN_FS = 0x4;
    /** s_flags bits: which char signedness the directory hash assumed. */
    public static final int FLAG_SIGNED_HASH = 0x1;
    public static final int FLAG_UNSIGNED_HASH = 0x2;

    private final ByteBuffer buf;

    /** Wraps a copy of the 1024 superblock bytes. */
    public Superblock(ByteBuffer raw) {
        ByteBuffer copy = ByteBuffer.allocate(SIZE);
        copy.put(raw.duplicate().limit(raw.position() + SIZE));
        this.buf = copy.flip().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The raw bytes, for writing back and for the layout test. */
    public ByteBuffer raw() {
        return buf.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    private long u32(int off) {
        return buf.getInt(off) & 0xFFFFFFFFL;
    }

    private int u16(int off) {
        return buf.getShort(off) & 0xFFFF;
    }

    private boolean is64Bit() {
        return hasIncompat(Feature.BIT64);
    }

    public int magic() { return u16(S_MAGIC); }
    public long inodesCount() { return u32(S_INODES_COUNT); }
    public long blocksCount() { return u32(S_BLOCKS_COUNT_LO) | (is64Bit() ? u32(S_BLOCKS_COUNT_HI) << 32 : 0); }
    public long reservedBlocksCount() { return u32(S_R_BLOCKS_COUNT_LO) | (is64Bit() ? u32(S_R_BLOCKS_COUNT_HI) << 32 : 0); }
    public long freeBlocksCount() { return u32(S_FREE_BLOCKS_COUNT_LO) | (is64Bit() ? u32(S_FREE_BLOCKS_COUNT_HI) << 32 : 0); }
    public long freeInodesCount() { return u32(S_FREE_INODES_COUNT); }
    public long firstDataBlock() { return u32(S_FIRST_DATA_BLOCK); }
    public int logBlockSize() { return buf.getInt(S_LOG_BLOCK_SIZE); }
    public int logClusterSize() { return buf.getInt(S_LOG_CLUSTER_SIZE); }
    public long blocksPerGroup() { return u32(S_BLOCKS_PER_GROUP); }
    /** s_clusters_per_group; without bigalloc the field may hold anything, so blocks per group it is. */
    public long clustersPerGroup() { return has(Feature.BIGALLOC) ? u32(S_CLUSTERS_PER_GROUP) : blocksPerGroup(); }
    public long inodesPerGroup() { return u32(S_INODES_PER_GROUP); }
    public long mtime() { return u32(S_MTIME); }
    public long wtime() { return u32(S_WTIME); }
    public int mountCount() { return u16(S_MNT_COUNT); }
    public int state() { return u16(S_STATE); }
    public int errors() { return u16(S_ERRORS); }
    public long revLevel() { return u32(S_REV_LEVEL); }
    public int defResuid() { return u16(S_DEF_RESUID); }
    public int defResgid() { return u16(S_DEF_RESGID); }
    public long firstIno() { return revLevel() == 0 ? 11 : u32(S_FIRST_INO); }
    public int inodeSize() { return revLevel() == 0 ? 128 : u16(S_INODE_SIZE); }
    public int featureCompat() { return buf.getInt(S_FEATURE_COMPAT); }
    public int featureIncompat() { return buf.getInt(S_FEATURE_INCOMPAT); }
    public int featureRoCompat() { return buf.getInt(S_FEATURE_RO_COMPAT); }
    public int reservedGdtBlocks() { return u16(S_RESERVED_GDT_BLOCKS); }
    public long journalInum() { return u32(S_JOURNAL_INUM); }
    public long lastOrphan() { return u32(S_LAST_ORPHAN); }
    public int defHashVersion() { return buf.get(S_DEF_HASH_VERSION) & 0xFF; }
    public long firstMetaBg() { return u32(S_FIRST_META_BG); }
    public int minExtraIsize() { return u16(S_MIN_EXTRA_ISIZE); }
    public int flags() { return buf.getInt(S_FLAGS); }
    /** s_mmp_update_interval: seconds between a holder's updates of the MMP block (0: the default, 5). */
    public int mmpUpdateInterval() { return u16(S_MMP_UPDATE_INTERVAL); }
    /** s_mmp_block: the block holding the MMP block, with INCOMPAT_MMP. */
    public long mmpBlock() { return buf.getLong(S_MMP_BLOCK); }
    public int logGroupsPerFlex() { return buf.get(S_LOG_GROUPS_PER_FLEX) & 0xFF; }
    public int checksumType() { return buf.get(S_CHECKSUM_TYPE) & 0xFF; }
    public long errorCount() { return u32(S_ERROR_COUNT); }
    public int checksumSeedField() { return buf.getInt(S_CHECKSUM_SEED); }
    /** s_backup_bgs[i], i in 0..1: a group holding a superblock backup with sparse_super2 (0: none). */
    public long backupBg(int i) { return u32(S_BACKUP_BGS + 4 * i); }
    public long orphanFileInum() { return u32(S_ORPHAN_FILE_INUM); }
    public int storedChecksum() { return buf.getInt(S_CHECKSUM); }

    private void put64(int lo, int hi, long v) {
        buf.putInt(lo, (int) v);
        if (is64Bit()) {
            buf.putInt(hi, (int) (v >>> 32));
        }
    }

    public void setFreeBlocksCount(long v) { put64(S_FREE_BLOCKS_COUNT_LO, S_FREE_BLOCKS_COUNT_HI, v); }
    public void setBlocksCount(long v) { put64(S_BLOCKS_COUNT_LO, S_BLOCKS_COUNT_HI, v); }
    public void setReservedBlocksCount(long v) { put64(S_R_BLOCKS_COUNT_LO, S_R_BLOCKS_COUNT_HI, v); }
    public void setInodesCount(long v) { buf.putInt(S_INODES_COUNT, (int) v); }
    public void setReservedGdtBlocks(int v) { buf.putShort(S_RESERVED_GDT_BLOCKS, (short) v); }
    public void setFirstMetaBg(long v) { buf.putInt(S_FIRST_META_BG, (int) v); }
    public void setFeatureCompat(int v) { buf.putInt(S_FEATURE_COMPAT, v); }
    /** s_block_group_nr: the group a superblock copy is stored in (0 for the primary). */
    public void setBlockGroupNr(int v) { buf.putShort(S_BLOCK_GROUP_NR, (short) v); }
    public void setFreeInodesCount(long v) { buf.putInt(S_FREE_INODES_COUNT, (int) v); }
    public void setState(int v) { buf.putShort(S_STATE, (short) v); }
    public void setMountCount(int v) { buf.putShort(S_MNT_COUNT, (short) v); }
    public void setMtime(long v) { buf.putInt(S_MTIME, (int) v); }
    public void setWtime(long v) { buf.putInt(S_WTIME, (int) v); }
    public void setLastOrphan(long v) { buf.putInt(S_LAST_ORPHAN, (int) v); }
    public void setFeatureRoCompat(int v) { buf.putInt(S_FEATURE_RO_COMPAT, v); }
    public void setFeatureIncompat(int v) { buf.putInt(S_FEATURE_INCOMPAT, v); }

    /**
     * Records a detected error as the kernel's save_error_info(): one more in s_error_count, the
     * last-error fields, and the first-error fields when this is the first.
     *
     * @param errcode an EXT4_ERR_* code (2 EIO, 4 EFSBADCRC, 5 EFSCORRUPTED)
     * @param func    where it was found (at most 32 bytes are kept)
     */
    public void recordError(long time, long ino, long block, String func, int errcode) {
        boolean first = errorCount() == 0;
        buf.putInt(S_ERROR_COUNT, (int) (errorCount() + 1));
        putError(S_LAST_ERROR_TIME, S_LAST_ERROR_TIME_HI, S_LAST_ERROR_INO, S_LAST_ERROR_BLOCK, S_LAST_ERROR_FUNC,
                S_LAST_ERROR_ERRCODE, time, ino, block, func, errcode);
        if (first || u32(S_FIRST_ERROR_TIME) == 0) {
            putError(S_FIRST_ERROR_TIME, S_FIRST_ERROR_TIME_HI, S_FIRST_ERROR_INO, S_FIRST_ERROR_BLOCK, S_FIRST_ERROR_FUNC,
                    S_FIRST_ERROR_ERRCODE, time, ino, block, func, errcode);
        }
    }

    private void putError(int timeOff, int timeHiOff, int inoOff, int blockOff, int funcOff, int codeOff,
                          long time, long ino, long block, String func, int errcode) {
        buf.putInt(timeOff, (int) time);
        buf.put(timeHiOff, (byte) (time >>> 32));
        buf.putInt(inoOff, (int) ino);
        buf.putLong(blockOff, block);
        byte[] name = func.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        for (int i = 0; i < ERROR_FUNC_SIZE; i++) {
            buf.put(funcOff + i, i < name.length ? name[i] : 0);
        }
        buf.put(codeOff, (byte) errcode);
    }

    /** Stores the checksum over the current bytes (with metadata_csum). */
    public void updateChecksum() {
        if (has(Feature.METADATA_CSUM)) {
            buf.putInt(S_CHECKSUM, computeChecksum());
        }
    }

    /** Block size in bytes: 1024 << s_log_block_size. */
    public int blockSize() {
        return 1024 << logBlockSize();
    }

    /** Blocks per allocation cluster: 1, or more with bigalloc. */
    public int clusterRatio() {
        return has(Feature.BIGALLOC) ? 1 << (logClusterSize() - logBlockSize()) : 1;
    }

    /** Descriptor size: 32 without 64bit, else s_desc_size. */
    public int descSize() {
        return is64Bit() ? u16(S_DESC_SIZE) : 32;
    }

    public long groupCount() {
        return (blocksCount() - firstDataBlock() + blocksPerGroup() - 1) / blocksPerGroup();
    }

    public byte[] uuid() {
        byte[] u = new byte[16];
        buf.get(S_UUID, u);
        return u;
    }

    public String volumeName() {
        byte[] n = new byte[16];
        buf.get(S_VOLUME_NAME, n);
        int len = 0;
        while (len < n.length && n[len] != 0) {
            len++;
        }
        return new String(n, 0, len, StandardCharsets.UTF_8);
    }

    /** s_hash_seed as four host ints. */
    public int[] hashSeed() {
        int[] seed = new int[4];
        for (int i = 0; i < 4; i++) {
            seed[i] = buf.getInt(S_HASH_SEED + 4 * i);
        }
        return seed;
    }

    public boolean has(Feature f) {
        int word = switch (f.kind()) {
            case COMPAT -> featureCompat();
            case INCOMPAT -> featureIncompat();
            case RO_COMPAT -> featureRoCompat();
        };
        return (word & f.mask()) != 0;
    }

    private boolean hasIncompat(Feature f) {
        return (featureIncompat() & f.mask()) != 0;
    }

    /** All feature names set, as dumpe2fs lists them. */
    public List<String> featureNames() {
        List<String> out = new ArrayList<>(Feature.names(Feature.Kind.COMPAT, featureCompat()));
        out.addAll(Feature.names(Feature.Kind.INCOMPAT, featureIncompat()));
        out.addAll(Feature.names(Feature.Kind.RO_COMPAT, featureRoCompat()));
        return out;
    }

    /** crc32c(~0, the superblock up to s_checksum). */
    public int computeChecksum() {
        return Checksums.crc32c(~0, buf, 0, S_CHECKSUM);
    }

    /** The seed every metadata_csum checksum starts from: crc32c(~0, uuid), or s_checksum_seed. */
    public int checksumSeed() {
        if (hasIncompat(Feature.CSUM_SEED)) {
            return checksumSeedField();
        }
        return Checksums.crc32c(~0, uuid(), 0, 16);
    }

    /**
     * Checks the fields every later computation divides or shifts by, so that a hostile superblock
     * is refused here instead of causing an exception or a huge allocation later.
     */
    public void validate() throws Ext4Exception {
        if (magic() != MAGIC) {
            throw Ext4Exception.corrupted(String.format("bad superblock magic 0x%04x (expected 0x%04x): not an ext2/3/4 filesystem", magic(), MAGIC));
        }
        if (logBlockSize() < 0 || logBlockSize() > 6) {
            throw Ext4Exception.corrupted("superblock: s_log_block_size " + logBlockSize() + " (expected 0..6: 1 KiB to 64 KiB blocks)");
        }
        int bs = blockSize();
        if (has(Feature.BIGALLOC) && (logClusterSize() < logBlockSize() || logClusterSize() - logBlockSize() > 16)) {
            throw Ext4Exception.corrupted("superblock: s_log_cluster_size " + logClusterSize() + " with s_log_block_size " + logBlockSize());
        }
        long cpg = clustersPerGroup();
        if (cpg == 0 || cpg > 8L * bs || cpg % 8 != 0 || blocksPerGroup() != cpg * clusterRatio()) {
            throw Ext4Exception.corrupted("superblock: " + blocksPerGroup() + " blocks and " + cpg + " clusters per group (expected a multiple of 8 up to "
                    + 8L * bs + " clusters, " + clusterRatio() + " blocks each)");
        }
        if (inodesPerGroup() == 0 || inodesPerGroup() > 8L * bs) {
            throw Ext4Exception.corrupted("superblock: s_inodes_per_group " + inodesPerGroup() + " (expected 1.." + 8L * bs + ")");
        }
        int isz = inodeSize();
        if (isz < 128 || isz > bs || Integer.bitCount(isz) != 1) {
            throw Ext4Exception.corrupted("superblock: s_inode_size " + isz + " (expected a power of two from 128 to the block size)");
        }
        if (firstDataBlock() >= blocksCount()) {
            throw Ext4Exception.corrupted("superblock: s_first_data_block " + firstDataBlock() + " is past s_blocks_count " + blocksCount());
        }
        if (bs == 1024 && firstDataBlock() != 1 && !has(Feature.BIGALLOC)) {
            throw Ext4Exception.corrupted("superblock: s_first_data_block " + firstDataBlock() + " (expected 1 for 1 KiB blocks)");
        }
        if (is64Bit() && (descSize() < 64 || descSize() > 1024 || Integer.bitCount(descSize()) != 1)) {
            throw Ext4Exception.corrupted("superblock: s_desc_size " + descSize() + " (expected a power of two from 64 to 1024 with 64bit)");
        }
        long groups = groupCount();
        if (groups * inodesPerGroup() != inodesCount()) {
            throw Ext4Exception.corrupted("superblock: s_inodes_count " + inodesCount() + " is not " + groups + " groups x " + inodesPerGroup() + " inodes");
        }
        if (firstIno() < 11 || firstIno() > inodesCount()) {
            throw Ext4Exception.corrupted("superblock: s_first_ino " + firstIno() + " (expected 11.." + inodesCount() + ")");
        }
    }
}
