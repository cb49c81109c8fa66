package dev.ext4j.io;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

/**
 * One GPT partition entry (UEFI spec, 5.3.3). GUIDs are stored mixed-endian: the first three
 * fields little-endian, the last eight bytes as they are.
 *
 * <pre>
 *  0 partition_type_guid (16)   16 unique_partition_guid (16)   32 starting_lba   40 ending_lba (inclusive)
 * 48 attributes                 56 partition_name (72 bytes of UTF-16LE)
 * </pre>
 */
final class GptEntry {
    static final int PARTITION_TYPE_GUID = 0;
    static final int STARTING_LBA = 32;
    static final int ENDING_LBA = 40;
    static final int PARTITION_NAME = 56;
    static final int NAME_BYTES = 72;
    /** The entry size of revision 1.0; sizeof_partition_entry is at least this. */
    static final int MIN_SIZE = 128;

    private final ByteBuffer buf;
    private final int at;

    GptEntry(ByteBuffer entries, int at) {
        this.buf = entries.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        this.at = at;
    }

    boolean isUnused() {
        return buf.getLong(at + PARTITION_TYPE_GUID) == 0 && buf.getLong(at + PARTITION_TYPE_GUID + 8) == 0;
    }

    long startingLba() { return buf.getLong(at + STARTING_LBA); }
    long endingLba() { return buf.getLong(at + ENDING_LBA); }

    /** The type GUID in its usual text form, upper case: "0FC63DAF-8483-4772-8E79-3D69D8477DE4". */
    String typeGuid() {
        int o = at + PARTITION_TYPE_GUID;
        HexFormat hex = HexFormat.of().withUpperCase();
        byte[] tail = new byte[8];
        buf.get(o + 8, tail);
        String t = hex.formatHex(tail);
        return hex.toHexDigits(buf.getInt(o)) + "-" + hex.toHexDigits(buf.getShort(o + 4)) + "-" + hex.toHexDigits(buf.getShort(o + 6))
                + "-" + t.substring(0, 4) + "-" + t.substring(4);
    }

    /** The partition's name, up to its first NUL. */
    String name() {
        byte[] raw = new byte[NAME_BYTES];
        buf.get(at + PARTITION_NAME, raw);
        int len = 0;
        while (len + 1 < raw.length && (raw[len] != 0 || raw[len + 1] != 0)) {
            len += 2;
        }
        return new String(raw, 0, len, StandardCharsets.UTF_16LE);
    }
}
