package dev.ext4j.io;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A master boot record or an extended boot record (EBR): one 512-byte sector with four partition
 * entries and the 0x55 0xAA signature. Little-endian.
 *
 * <pre>
 * sector:  446 entries[4], 16 bytes each    510 signature 0x55 0xAA
 * entry:   0 boot indicator (0x00 or 0x80)   1 CHS start (3)   4 type   5 CHS end (3)
 *          8 first sector (u32, relative)   12 sectors (u32)
 * </pre>
 *
 * In an EBR, entry 0 is a logical partition (its start relative to the EBR) and entry 1 points at
 * the next EBR (its start relative to the extended partition).
 */
final class MbrSector {
    static final int SIZE = 512;
    static final int ENTRIES = 446;
    static final int ENTRY_SIZE = 16;
    static final int SIGNATURE = 510;
    static final int E_BOOT = 0;
    static final int E_TYPE = 4;
    static final int E_START = 8;
    static final int E_SECTORS = 12;

    /** The type of a GPT's protective MBR entry. */
    static final int TYPE_GPT_PROTECTIVE = 0xEE;

    private final ByteBuffer buf;

    MbrSector(ByteBuffer raw) {
        this.buf = raw.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    boolean hasSignature() {
        return (buf.get(SIGNATURE) & 0xFF) == 0x55 && (buf.get(SIGNATURE + 1) & 0xFF) == 0xAA;
    }

    /**
     * Whether the sector starts with an x86 jump (0xEB or 0xE9), as a FAT or NTFS boot sector does
     * (over its BIOS parameter block). Some boot loaders' MBR code starts so too, so this alone
     * does not tell a boot sector from an MBR; with four empty entries it does well enough.
     */
    boolean isBootSector() {
        int b = buf.get(0) & 0xFF;
        return b == 0xEB || b == 0xE9;
    }

    /** Boot indicator of entry {@code i}: 0x00 or 0x80 in a real table, anything in a boot sector. */
    int bootIndicator(int i) {
        return buf.get(ENTRIES + i * ENTRY_SIZE + E_BOOT) & 0xFF;
    }

    int type(int i) {
        return buf.get(ENTRIES + i * ENTRY_SIZE + E_TYPE) & 0xFF;
    }

    long startSector(int i) {
        return Integer.toUnsignedLong(buf.getInt(ENTRIES + i * ENTRY_SIZE + E_START));
    }

    long sectors(int i) {
        return Integer.toUnsignedLong(buf.getInt(ENTRIES + i * ENTRY_SIZE + E_SECTORS));
    }

    boolean isEmpty(int i) {
        return type(i) == 0 || sectors(i) == 0;
    }

    /** DOS extended (0x05), W95 extended LBA (0x0F), Linux extended (0x85). */
    static boolean isExtended(int type) {
        return type == 0x05 || type == 0x0F || type == 0x85;
    }
}
