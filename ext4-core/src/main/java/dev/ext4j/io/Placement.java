package dev.ext4j.io;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import java.io.IOException;

/**
 * Where the filesystem is in the image file: the whole image, from a byte offset to the end
 * (fuse2fs' {@code offset=}), or one partition of the image's MBR or GPT ({@code partition=}).
 *
 * @param offset    first byte of the filesystem when {@code partition} is 0
 * @param partition partition number as Linux gives it (1-4 primary, 5 and up logical), or 0
 */
public record Placement(long offset, int partition) {
    /** The filesystem fills the image. */
    public static final Placement WHOLE_IMAGE = new Placement(0, 0);

    public Placement {
        if (offset < 0 || partition < 0 || (offset != 0 && partition != 0)) {
            throw new IllegalArgumentException("offset " + offset + " and partition " + partition
                    + ": an offset of at least 0, or a partition number of at least 1, not both");
        }
    }

    public static Placement atOffset(long offset) {
        return new Placement(offset, 0);
    }

    public static Placement ofPartition(int number) {
        if (number < 1) {
            throw new IllegalArgumentException("partition numbers start at 1, not " + number);
        }
        return new Placement(0, number);
    }

    public boolean wholeImage() {
        return offset == 0 && partition == 0;
    }

    /**
     * The device the filesystem is on: {@code image} itself, or a {@link WindowDevice} onto the
     * offset's or the partition's bytes. An offset's window reaches to the image's end (as in
     * fuse2fs), or, in a partitioned image, to the end of the partition holding the offset or the
     * start of the next one, so that a resize cannot spill into another partition. EINVAL when the offset is past the image's end or the
     * partition cannot be used (see {@link PartitionTable#partition}).
     */
    public BlockDevice open(BlockDevice image) throws Ext4Exception {
        if (wholeImage()) {
            return image;
        }
        long imageBytes;
        try {
            imageBytes = image.size();
        } catch (IOException e) {
            throw new Ext4Exception(Errno.EIO, "cannot read the image size: " + e.getMessage(), e);
        }
        if (partition == 0) {
            if (offset >= imageBytes) {
                throw new Ext4Exception(Errno.EINVAL, "offset " + offset + " is not inside the image (" + imageBytes + " bytes)");
            }
            long end = PartitionTable.endOfRegion(image, offset, imageBytes);
            return new WindowDevice(image, offset, end - offset, "the filesystem at offset " + offset);
        }
        PartitionTable.Partition p = PartitionTable.read(image).partition(partition);
        return new WindowDevice(image, p.start(), p.size(), "partition " + partition);
    }
}
