package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;

/**
 * The changes the namespace operations make to one directory's entries, wherever they live: in
 * blocks ({@link DirectoryWriter}) or inline in the inode ({@code dev.ext4j.inline.InlineDirectoryWriter}).
 * The caller holds the directory's write lock for as long as it uses one.
 */
public interface DirChanges {

    /** A reader over the entries as they are now, this writer's changes included. */
    DirEntries reader();

    /** ext4_add_entry(): adds {@code name} for inode {@code ino}; EEXIST when the name is taken. */
    void add(byte[] name, long ino, int fileType) throws Ext4Exception;

    /**
     * {@link #add} for a name the caller has just looked up and not found, under the directory's
     * lock: the search for it is not made again.
     */
    default void addNew(byte[] name, long ino, int fileType) throws Ext4Exception {
        add(name, ino, fileType);
    }

    /** ext4_delete_entry(): removes {@code name} and returns the inode it pointed to; ENOENT when absent. */
    long remove(byte[] name) throws Ext4Exception;

    /** ext4_setent(): points the existing entry {@code name} at {@code newIno}; returns the inode it pointed to. */
    long replace(byte[] name, long newIno, int fileType) throws Ext4Exception;

    /** Points ".." at {@code parentIno} (a directory moved to another parent). */
    void setDotDot(long parentIno) throws Ext4Exception;

    /** ext4_empty_dir(): true when only "." and ".." are left. */
    boolean isEmpty() throws Ext4Exception;
}
