package dev.ext4j.format;

import java.util.ArrayList;
import java.util.List;

/**
 * Feature flags of the superblock, each with its word, bit and the name e2fsprogs and the kernel
 * use. {@link #readable} and {@link #writable} say what ext4j implements.
 */
public enum Feature {
    DIR_PREALLOC(Kind.COMPAT, 0x1, "dir_prealloc", true, true),
    IMAGIC_INODES(Kind.COMPAT, 0x2, "imagic_inodes", true, true),
    HAS_JOURNAL(Kind.COMPAT, 0x4, "has_journal", true, true),
    EXT_ATTR(Kind.COMPAT, 0x8, "ext_attr", true, true),
    RESIZE_INODE(Kind.COMPAT, 0x10, "resize_inode", true, true),
    DIR_INDEX(Kind.COMPAT, 0x20, "dir_index", true, true),
    LAZY_BG(Kind.COMPAT, 0x40, "lazy_bg", true, true),
    EXCLUDE_BITMAP(Kind.COMPAT, 0x100, "exclude_bitmap", true, true),
    SPARSE_SUPER2(Kind.COMPAT, 0x200, "sparse_super2", true, true),
    FAST_COMMIT(Kind.COMPAT, 0x400, "fast_commit", true, true),
    STABLE_INODES(Kind.COMPAT, 0x800, "stable_inodes", true, true),
    ORPHAN_FILE(Kind.COMPAT, 0x1000, "orphan_file", true, true),

    COMPRESSION(Kind.INCOMPAT, 0x1, "compression", false, false),
    FILETYPE(Kind.INCOMPAT, 0x2, "filetype", true, true),
    RECOVER(Kind.INCOMPAT, 0x4, "needs_recovery", true, true),
    JOURNAL_DEV(Kind.INCOMPAT, 0x8, "journal_dev", false, false),
    META_BG(Kind.INCOMPAT, 0x10, "meta_bg", true, true),
    EXTENTS(Kind.INCOMPAT, 0x40, "extent", true, true),
    BIT64(Kind.INCOMPAT, 0x80, "64bit", true, true),
    MMP(Kind.INCOMPAT, 0x100, "mmp", true, true),
    FLEX_BG(Kind.INCOMPAT, 0x200, "flex_bg", true, true),
    EA_INODE(Kind.INCOMPAT, 0x400, "ea_inode", true, false),
    DIRDATA(Kind.INCOMPAT, 0x1000, "dirdata", false, false),
    CSUM_SEED(Kind.INCOMPAT, 0x2000, "metadata_csum_seed", true, true),
    LARGEDIR(Kind.INCOMPAT, 0x4000, "large_dir", true, true),
    INLINE_DATA(Kind.INCOMPAT, 0x8000, "inline_data", true, true),
    ENCRYPT(Kind.INCOMPAT, 0x10000, "encrypt", true, false),
    CASEFOLD(Kind.INCOMPAT, 0x20000, "casefold", true, false),

    SPARSE_SUPER(Kind.RO_COMPAT, 0x1, "sparse_super", true, true),
    LARGE_FILE(Kind.RO_COMPAT, 0x2, "large_file", true, true),
    BTREE_DIR(Kind.RO_COMPAT, 0x4, "btree_dir", true, false),
    HUGE_FILE(Kind.RO_COMPAT, 0x8, "huge_file", true, true),
    GDT_CSUM(Kind.RO_COMPAT, 0x10, "uninit_bg", true, true),
    DIR_NLINK(Kind.RO_COMPAT, 0x20, "dir_nlink", true, true),
    EXTRA_ISIZE(Kind.RO_COMPAT, 0x40, "extra_isize", true, true),
    HAS_SNAPSHOT(Kind.RO_COMPAT, 0x80, "snapshot", true, false),
    QUOTA(Kind.RO_COMPAT, 0x100, "quota", true, false),
    BIGALLOC(Kind.RO_COMPAT, 0x200, "bigalloc", true, false),
    METADATA_CSUM(Kind.RO_COMPAT, 0x400, "metadata_csum", true, true),
    REPLICA(Kind.RO_COMPAT, 0x800, "replica", true, false),
    READONLY(Kind.RO_COMPAT, 0x1000, "read-only", true, false),
    PROJECT(Kind.RO_COMPAT, 0x2000, "project", true, false),
    SHARED_BLOCKS(Kind.RO_COMPAT, 0x4000, "shared_blocks", true, false),
    VERITY(Kind.RO_COMPAT, 0x8000, "verity", true, false),
    ORPHAN_PRESENT(Kind.RO_COMPAT, 0x10000, "orphan_present", true, true);

    /** The superblock word a feature lives in. */
    public enum Kind { COMPAT, INCOMPAT, RO_COMPAT }

    private final Kind kind;
    private final int mask;
    private final String kernelName;
    private final boolean readable;
    private final boolean writable;

    Feature(Kind kind, int mask, String kernelName, boolean readable, boolean writable) {
        this.kind = kind;
        this.mask = mask;
        this.kernelName = kernelName;
        this.readable = readable;
        this.writable = writable;
    }

    public Kind kind() {
        return kind;
    }

    public int mask() {
        return mask;
    }

    public String kernelName() {
        return kernelName;
    }

    /** ext4j can mount an image with this feature at all. */
    public boolean readable() {
        return readable;
    }

    /** ext4j can keep this feature right when it writes. */
    public boolean writable() {
        return writable;
    }

    /** Names of the features set in {@code word}, unknown bits as "FEATURE_I0x...". */
    public static List<String> names(Kind kind, int word) {
        List<String> out = new ArrayList<>();
        int known = 0;
        for (Feature f : values()) {
            if (f.kind == kind && (word & f.mask) != 0) {
                out.add(f.kernelName);
                known |= f.mask;
            }
        }
        int unknown = word & ~known;
        for (int bit = 0; bit < 32; bit++) {
            if ((unknown & (1 << bit)) != 0) {
                String prefix = kind == Kind.COMPAT ? "C" : kind == Kind.INCOMPAT ? "I" : "R";
                out.add(String.format("FEATURE_%s%d", prefix, bit));
            }
        }
        return out;
    }

    /** Bits of {@code word} that no known feature of {@code kind} claims. */
    public static int unknownBits(Kind kind, int word) {
        int known = 0;
        for (Feature f : values()) {
            if (f.kind == kind) {
                known |= f.mask;
            }
        }
        return word & ~known;
    }
}
