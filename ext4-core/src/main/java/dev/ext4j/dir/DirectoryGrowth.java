package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;

/**
 * What a {@link DirectoryWriter} needs from the filesystem layer that owns the directory inode:
 * blocks (ext4_append() / ext4_bread(CREATE)), the size, and EXT4_INDEX_FL. The caller holds the
 * directory's write lock for the whole operation.
 *
 * <p>Order of calls when the directory grows: {@link #allocateBlock} (the block is mapped but lies
 * past i_size, so no reader looks at it), then the writer fills the block, then {@link #setSize};
 * only after that does any index entry point at the new block.
 */
public interface DirectoryGrowth {

    /**
     * Allocates a block for logical block {@code lblk} of the directory and maps it, leaving i_size
     * alone. {@code lblk} is the current block count when the directory grows, or a hole below it
     * (a linear directory with a hole, which ext4_add_entry() fills). The contents need not be
     * initialized: the writer overwrites the whole block.
     *
     * @return the physical block
     */
    long allocateBlock(long lblk) throws Ext4Exception;

    /** Sets i_size (and i_disksize) to {@code sizeBytes}, a multiple of the block size. */
    void setSize(long sizeBytes) throws Ext4Exception;

    /**
     * Sets (true: the linear directory became an htree, make_indexed_dir()) or clears (false: a
     * corrupt index was dropped on a filesystem without metadata_csum, or the dir_index feature is
     * off, ext4_update_dx_flag()) EXT4_INDEX_FL (0x1000) in the inode.
     */
    void setIndexed(boolean indexed) throws Ext4Exception;
}
