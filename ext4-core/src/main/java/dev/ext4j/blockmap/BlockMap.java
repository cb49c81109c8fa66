package dev.ext4j.blockmap;

import dev.ext4j.Ext4Exception;

/** Maps a file's logical blocks to physical blocks: an extent tree or a legacy indirect map. */
public interface BlockMap {

    /**
     * The mapping that starts at {@code lblk}: a mapped run or a hole, at most {@code maxLength}
     * blocks long and never less than one.
     */
    Mapping map(long lblk, long maxLength) throws Ext4Exception;
}
