package dev.ext4j.io;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.zip.CRC32;

/**
 * A GUID partition table header (UEFI spec, 5.3.2), at LBA 1 and, as a backup, at the last LBA.
 * Little-endian; the CRC32 covers {@code header_size} bytes with the CRC field read as zero.
 *
 * <pre>
 *  0 signature "EFI PART"    8 revision      12 header_size     16 header_crc32    20 reserved
 * 24 my_lba                 32 alternate_lba 40 first_usable_lba 48 last_usable_lba
 * 56 disk_guid (16)         72 partition_entry_lba   80 num_partition_entries
 * 84 sizeof_partition_entry 88 partition_entry_array_crc32
 * </pre>
 */
final class GptHeader {
    static final long SIGNATURE_VALUE = 0x5452415020494645L; // "EFI PART" read little-endian
    static final int SIGNATURE = 0;
    static final int HEADER_SIZE = 12;
    static final int HEADER_CRC32 = 16;
    static final int MY_LBA = 24;
    static final int ALTERNATE_LBA = 32;
    static final int FIRST_USABLE_LBA = 40;
    static final int LAST_USABLE_LBA = 48;
    static final int PARTITION_ENTRY_LBA = 72;
    static final int NUM_PARTITION_ENTRIES = 80;
    static final int SIZEOF_PARTITION_ENTRY = 84;
    static final int PARTITION_ENTRY_ARRAY_CRC32 = 88;
    /** The header's size in revision 1.0; header_size is at least this. */
    static final int MIN_SIZE = 92;

    private final ByteBuffer buf;

    /** @param raw one logical sector */
    GptHeader(ByteBuffer raw) {
        this.buf = raw.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    boolean hasSignature() {
        return buf.getLong(SIGNATURE) == SIGNATURE_VALUE;
    }

    long headerSize() { return Integer.toUnsignedLong(buf.getInt(HEADER_SIZE)); }
    long storedCrc() { return Integer.toUnsignedLong(buf.getInt(HEADER_CRC32)); }
    long myLba() { return buf.getLong(MY_LBA); }
    long alternateLba() { return buf.getLong(ALTERNATE_LBA); }
    long firstUsableLba() { return buf.getLong(FIRST_USABLE_LBA); }
    long lastUsableLba() { return buf.getLong(LAST_USABLE_LBA); }
    long entriesLba() { return buf.getLong(PARTITION_ENTRY_LBA); }
    long entryCount() { return Integer.toUnsignedLong(buf.getInt(NUM_PARTITION_ENTRIES)); }
    long entrySize() { return Integer.toUnsignedLong(buf.getInt(SIZEOF_PARTITION_ENTRY)); }
    long storedEntriesCrc() { return Integer.toUnsignedLong(buf.getInt(PARTITION_ENTRY_ARRAY_CRC32)); }

    /** The CRC32 of the first {@link #headerSize()} bytes (at most the sector) with the CRC field as zero. */
    long computeCrc() {
        ByteBuffer copy = ByteBuffer.allocate((int) Math.min(headerSize(), buf.capacity()));
        copy.put(0, buf, 0, copy.capacity());
        copy.putInt(HEADER_CRC32, 0);
        CRC32 crc = new CRC32();
        crc.update(copy);
        return crc.getValue();
    }
}
